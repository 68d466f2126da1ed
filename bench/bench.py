"""Benchmark nnxgen's generated Linen wrappers against pure NNX and ``nnx.bridge.to_linen``.

Run from the repository root::

    .venv/bin/python bench/bench.py                # full run (~3-4 minutes on 2 busy cores)
    .venv/bin/python bench/bench.py --quick        # fewer repetitions, no memory section
    .venv/bin/python bench/bench.py --json out.json --profile   # + cProfile of eager apply
    .venv/bin/python bench/bench.py --models mlp_bn,cnn --no-memory

For every model -- (a) an 8-layer Linear+relu MLP (width 256, its NNX class is
written to a temp dir and wrapped in-process with ``nnxgen.generate``), (b) the
BatchNorm+Dropout ``MLP`` block, (c) ``TransformerBlock`` and (d) ``CNN`` from
``generated_examples`` -- three implementations are compared:

* ``nnx``:     pure NNX. ``graphdef, state = nnx.split(module)`` once (the module
               in ``.eval()`` / ``.train()``); the function is
               ``nnx.merge(graphdef, state)(x)``; in train mode it also returns the
               updated non-``Param`` state (batch stats and rng counters), the NNX
               analogue of ``mutable=['batch_stats']``.
* ``nnxgen``:  the generated wrapper; ``model.apply(v, x, train=...)`` (train mode:
               ``rngs={'dropout': k}, mutable=['batch_stats']``).
* ``bridge``:  ``flax.nnx.bridge.to_linen(NnxClass, *args)``; init with
               ``{'params', 'dropout'}`` keys; the mode is set by an ``nnx_method``
               that calls ``.eval()`` / ``.train()`` before ``__call__`` (the bridge
               rebuilds the module in its default mode on every apply).

Columns (medians over repetitions; ``x`` = ratio to ``nnx`` measured in the same run):

* init:     nnx: ``Class(..., rngs=nnx.Rngs(0))`` + ``nnx.split``; wrappers: ``model.init``
            repeated (the bridge runs one eager forward pass every time; nnxgen skips
            it once an init has seen it add no variable: ``Module.init`` discards
            its output -- see ``nnxgen.runtime.INIT_SKIPS_KNOWN_FORWARD``).
* 1st init: the same, but nnxgen's caches are cleared before every repetition: the
            first init of a model in a process, which runs the forward pass.
* trace:    ``jax.jit(f).lower(...)`` with a fresh function object every repetition.
* compile:  ``lowered.compile()``.
* HLO ops:  instructions in every computation (ENTRY, fusions, reducers, ...) of the
            optimized module ``compiled.as_text()``.
* jit call: steady-state call of the jitted function (after warm-up, block_until_ready).
* eager:    the same function un-jitted (op-by-op dispatch plus Python work).

Memory (one subprocess per implementation, 8-layer MLP of width 2048, ~128 MiB of
params; glibc's mmap threshold is pinned so freed buffers leave the RSS):

* cold peak: peak-RSS growth over the first init in a fresh process (includes
             compiling the eager kernels): ``VmHWM`` after resetting the high-water
             mark through ``/proc/self/clear_refs``, minus the RSS before (falls back
             to ``ru_maxrss`` growth where the reset is not allowed);
* warm peak: the same over a second init (the init's own transient memory);
* retained:  RSS growth still held once the init returned (the variables);
* eval_shape: ``VmHWM`` growth over ``jax.eval_shape(model.init, key, x)`` (``nnx``:
             ``nnx.eval_shape`` of the constructor); should be ~0 and return only
             ``ShapeDtypeStruct`` leaves.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import dataclasses
import functools
import gc
import importlib
import io
import json
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_T_IMPORT0 = time.perf_counter()
import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge

import nnxgen
import nnxgen.runtime as _rt
from nnxgen import generate as _generate

IMPORT_S = time.perf_counter() - _T_IMPORT0

IMPLS = ("nnx", "nnxgen", "bridge")

TARGETS = {
    "hlo": "HLO op count ratio <= 1.00 (train and eval; no op beyond pure NNX's)",
    "trace": "trace+lower <= 1.10x pure NNX",
    "eager": "eager apply <= 1.3x pure NNX",
    "init": "init <= 1.1x pure NNX construction (repeated init; first init in detail)",
}
TRACE_LIMIT, EAGER_LIMIT, INIT_LIMIT = 1.10, 1.3, 1.1

# ---------------------------------------------------------------------------
# The 8-layer MLP, written to a temp dir and wrapped with nnxgen in-process.

DEEP_MODULE = "nnxgen_bench_models"
DEEP_SOURCE = '''\
"""Models used only by nnxgen's benchmark (written at run time)."""

from __future__ import annotations

import jax
from flax import nnx


class DeepMLP(nnx.Module):
    """``depth`` Linear layers with relu in between."""

    def __init__(self, din: int, width: int = 256, depth: int = 8, *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(din if i == 0 else width, width, rngs=rngs) for i in range(depth)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nnx.relu(x)
        return x
'''


def setup_deep_mlp(tmpdir: str) -> tuple[type, type]:
    """Write the DeepMLP module, generate its wrapper next to it, import both."""
    d = Path(tmpdir)
    (d / f"{DEEP_MODULE}.py").write_text(DEEP_SOURCE)
    if tmpdir not in sys.path:
        sys.path.insert(0, tmpdir)
    importlib.invalidate_caches()
    out = d / f"{DEEP_MODULE}_linen.py"
    text = _generate.generate([f"{DEEP_MODULE}:DeepMLP"], str(out))
    out.write_text(text)
    importlib.invalidate_caches()
    nnx_mod = importlib.import_module(DEEP_MODULE)
    linen_mod = importlib.import_module(f"{DEEP_MODULE}_linen")
    return nnx_mod.DeepMLP, linen_mod.DeepMLP


# ---------------------------------------------------------------------------
# Cases.


@dataclasses.dataclass
class Case:
    name: str
    label: str
    nnx_cls: type
    wrapper_cls: type
    args: tuple
    kwargs: dict
    x_shape: tuple
    has_mode: bool

    @property
    def modes(self) -> tuple[str, ...]:
        return ("eval", "train") if self.has_mode else ("eval",)

    def x(self) -> jax.Array:
        return jax.random.normal(jax.random.key(42), self.x_shape, jnp.float32)


def make_cases(tmpdir: str) -> list[Case]:
    from generated_examples import (
        cnn,
        cnn_linen,
        mlp,
        mlp_linen,
        transformer,
        transformer_linen,
    )

    deep_nnx, deep_linen = setup_deep_mlp(tmpdir)
    return [
        Case(
            "mlp8",
            "(a) 8-layer MLP w256",
            deep_nnx,
            deep_linen,
            (256,),
            {"width": 256, "depth": 8},
            (64, 256),
            False,
        ),
        Case(
            "mlp_bn",
            "(b) MLP BN+Dropout",
            mlp.MLP,
            mlp_linen.MLP,
            (128, 512, 128),
            {"dropout_rate": 0.1, "momentum": 0.9},
            (64, 128),
            True,
        ),
        Case(
            "transformer",
            "(c) TransformerBlock",
            transformer.TransformerBlock,
            transformer_linen.TransformerBlock,
            (4, 128, 512, 0.1),
            {},
            (8, 64, 128),
            True,
        ),
        Case(
            "cnn",
            "(d) CNN",
            cnn.CNN,
            cnn_linen.CNN,
            (3, 10, (16, 32), (3, 3)),
            {},
            (8, 32, 32, 3),
            False,
        ),
    ]


def _eval_call(module, *args):
    module.eval()
    return module(*args)


def _train_call(module, *args):
    module.train()
    return module(*args)


class Impls:
    """Initialised models and jit-able functions of the three implementations of one case."""

    def __init__(self, case: Case):
        self.case = case
        self.x = case.x()
        self.key = jax.random.key(0)
        self.dkey = jax.random.key(1)
        self.wrapper = case.wrapper_cls(*case.args, **case.kwargs)
        self.bridge = bridge.to_linen(case.nnx_cls, *case.args, **case.kwargs)
        self.bridge_eval = {"nnx_method": _eval_call} if case.has_mode else {}
        self.bridge_train = {"nnx_method": _train_call}
        self.nnx_split = {}
        for mode in case.modes:
            m = self.construct()
            if case.has_mode:
                m.eval() if mode == "eval" else m.train()
            self.nnx_split[mode] = nnx.split(m)
        self.w_vars = self.init_fn("nnxgen")()
        self.b_vars = self.init_fn("bridge")()

    def construct(self):
        c = self.case
        return c.nnx_cls(*c.args, **c.kwargs, rngs=nnx.Rngs(0))

    def init_fn(self, impl: str) -> Callable[[], Any]:
        if impl == "nnx":
            return lambda: nnx.split(self.construct())[1]
        if impl == "nnxgen":
            return lambda: self.wrapper.init(self.key, self.x, train=False)
        return lambda: self.bridge.init(
            {"params": self.key, "dropout": self.dkey}, self.x, **self.bridge_eval
        )

    def fn(self, impl: str, mode: str) -> tuple[Callable[..., Any], tuple]:
        """A FRESH function object (so jit caches never hit) and its arguments."""
        if impl == "nnx":
            graphdef, state = self.nnx_split[mode]
            if mode == "eval":

                def f(state, x):
                    return nnx.merge(graphdef, state)(x)
            else:

                def f(state, x):
                    m = nnx.merge(graphdef, state)
                    y = m(x)
                    return y, nnx.state(m, nnx.Not(nnx.Param))

            return f, (state, self.x)
        if impl == "nnxgen":
            model = self.wrapper
            if mode == "eval":

                def f(v, x):
                    return model.apply(v, x, train=False)

                return f, (self.w_vars, self.x)

            def f(v, x, k):
                return model.apply(
                    v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"]
                )

            return f, (self.w_vars, self.x, self.dkey)
        model = self.bridge
        if mode == "eval":
            kw = self.bridge_eval

            def f(v, x):
                return model.apply(v, x, **kw)

            return f, (self.b_vars, self.x)
        kw = self.bridge_train

        def f(v, x, k):
            return model.apply(v, x, rngs={"dropout": k}, mutable=["batch_stats"], **kw)

        return f, (self.b_vars, self.x, self.dkey)


# ---------------------------------------------------------------------------
# HLO op counting.

_INSTR_RE = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*)$")


def _opcode(rhs: str) -> str:
    """Opcode of an instruction's right-hand side ``shape opcode(operands), attrs``."""
    i = 0
    if rhs.startswith("("):  # tuple shape, possibly nested
        depth = 0
        for i, ch in enumerate(rhs):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                break
        i += 1
    else:
        i = rhs.find(" ")
    m = re.match(r"\s*([A-Za-z][\w\-]*)\(", rhs[i:])
    return m.group(1) if m else "?"


def hlo_ops(text: str) -> collections.Counter:
    """Opcode histogram of every instruction inside every computation block."""
    ops: collections.Counter = collections.Counter()
    inside = False
    for line in text.splitlines():
        s = line.rstrip()
        if not inside:
            if s.endswith("{") and ("->" in s or s.startswith("ENTRY")):
                inside = True
            continue
        if s == "}":
            inside = False
            continue
        m = _INSTR_RE.match(s)
        if m:
            ops[_opcode(m.group(1))] += 1
    return ops


# ---------------------------------------------------------------------------
# Timing helpers.


def _block(x):
    return jax.block_until_ready(x)


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()`` including its device work."""
    c0, t0 = time.process_time(), time.perf_counter()
    _block(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def interleaved(tasks: dict[str, Callable[[], Any]], reps: int) -> dict[str, list]:
    """Run each task ``reps`` times, rotating the order every round (shared-CPU drift)."""
    names = list(tasks)
    out: dict[str, list] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            out[n].append(tasks[n]())
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def med_wc(
    samples: dict[str, list], scale: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Medians of (wall, cpu) samples per implementation, times ``scale``."""
    wall = {k: med([s[0] for s in v]) * scale for k, v in samples.items()}
    cpu = {k: med([s[1] for s in v]) * scale for k, v in samples.items()}
    return wall, cpu


@dataclasses.dataclass
class Reps:
    init: int
    trace: int
    compile: int
    call_samples: int
    call_inner: int
    eager: int


FULL = Reps(init=21, trace=9, compile=3, call_samples=21, call_inner=5, eager=9)
QUICK = Reps(init=7, trace=3, compile=1, call_samples=7, call_inner=3, eager=5)


def bench_case(
    case: Case, reps: Reps, log: Callable[[str], None], im: Impls
) -> dict[str, Any]:
    t_case = time.perf_counter()
    res: dict[str, Any] = {"label": case.label, "modes": {}}

    # init (eager): warm-up once, then interleaved medians.
    # "nnxgen_first": an init whose forward pass nnxgen has not seen yet (the
    # first init of a model in a process), which runs the forward like Linen.
    fns = {impl: im.init_fn(impl) for impl in IMPLS}
    wrapper_init = fns["nnxgen"]

    def first_init():
        _rt.clear_cache()
        return wrapper_init()

    fns["nnxgen_first"] = first_init
    for f in fns.values():
        _block(f())
    samples = interleaved(
        {k: functools.partial(_timed, f) for k, f in fns.items()}, reps.init
    )
    wall, cpu = med_wc(samples, 1e3)
    res["init_first_ms"], res["init_first_cpu_ms"] = (
        {**d, "nnxgen": d.pop("nnxgen_first")} for d in (wall, cpu)
    )
    res["init_ms"], res["init_cpu_ms"] = wall, cpu

    phases = [f"init {time.perf_counter() - t_case:.1f}s"]
    for mode in case.modes:
        res["modes"][mode] = bench_mode(im, mode, reps, phases)
    log(f"  {case.name}: {time.perf_counter() - t_case:.1f}s ({', '.join(phases)})")
    return res


def bench_mode(im: Impls, mode: str, reps: Reps, phases: list[str]) -> dict[str, Any]:
    """trace+lower, compile, HLO ops, steady call and eager apply of one mode."""
    r: dict[str, Any] = {}
    t_phase = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal t_phase
        phases.append(f"{mode} {what} {time.perf_counter() - t_phase:.1f}s")
        t_phase = time.perf_counter()

    # trace+lower with a fresh function object every repetition; the last
    # ``reps.compile`` lowerings are also compiled (each compile is fresh too).
    lowered: dict[str, list] = {k: [] for k in IMPLS}

    def lower(impl):
        f, args = im.fn(impl, mode)
        c0, t0 = time.process_time(), time.perf_counter()
        lo = jax.jit(f).lower(*args)
        dt = time.perf_counter() - t0, time.process_time() - c0
        lowered[impl].append(lo)
        del lowered[impl][: -reps.compile]
        return dt

    for impl in IMPLS:  # warm-up: the first trace fills nnxgen's graphdef cache etc.
        lower(impl)
    samples = interleaved({k: functools.partial(lower, k) for k in IMPLS}, reps.trace)
    r["trace_ms"], r["trace_cpu_ms"] = med_wc(samples, 1e3)
    lap("trace")

    compiled: dict[str, Any] = {}

    def compile_(impl):
        lo = lowered[impl].pop()
        c0, t0 = time.process_time(), time.perf_counter()
        compiled[impl] = lo.compile()
        return time.perf_counter() - t0, time.process_time() - c0

    samples = interleaved(
        {k: functools.partial(compile_, k) for k in IMPLS}, reps.compile
    )
    r["compile_ms"], r["compile_cpu_ms"] = med_wc(samples, 1e3)
    hist = {k: hlo_ops(compiled[k].as_text()) for k in IMPLS}
    r["hlo_ops"] = {k: sum(h.values()) for k, h in hist.items()}
    r["hlo_hist"] = {k: dict(sorted(h.items())) for k, h in hist.items()}
    lap("compile")

    # Steady call of the compiled function (the jit fast path is ~5us cheaper per
    # call, the same for every implementation).
    ready = {}
    for impl in IMPLS:
        _, args = im.fn(impl, mode)
        for _ in range(3):
            _block(compiled[impl](*args))
        ready[impl] = (compiled[impl], args)

    def call(impl):
        c, args = ready[impl]
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(reps.call_inner):
            out = c(*args)
        _block(out)
        n = reps.call_inner
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    samples = interleaved(
        {k: functools.partial(call, k) for k in IMPLS}, reps.call_samples
    )
    r["call_us"], r["call_cpu_us"] = med_wc(samples, 1e6)
    lap("call")

    # Eager (un-jitted) apply.
    eager = {}
    for impl in IMPLS:
        f, args = im.fn(impl, mode)
        _block(f(*args))
        _block(f(*args))
        eager[impl] = functools.partial(f, *args)
    samples = interleaved(
        {k: functools.partial(_timed, g) for k, g in eager.items()}, reps.eager
    )
    r["eager_ms"], r["eager_cpu_ms"] = med_wc(samples, 1e3)
    lap("eager")
    return r


# ---------------------------------------------------------------------------
# Memory (subprocess per implementation).

MEM_WIDTH, MEM_DEPTH, MEM_BATCH = 2048, 8, 64


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _peak_of(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """(result, VmHWM growth over fn) after resetting the high-water mark."""
    gc.collect()
    if not _reset_hwm():
        return _block(fn()), None
    base = _rss_bytes()
    out = _block(fn())
    hwm = _hwm_bytes()
    return out, None if hwm is None else max(0, hwm - base)


def mem_child(impl: str, tmpdir: str) -> dict[str, Any]:
    deep_nnx, deep_linen = setup_deep_mlp(tmpdir)
    x = jax.random.normal(jax.random.key(1), (MEM_BATCH, MEM_WIDTH))
    key, dkey = jax.random.key(0), jax.random.key(1)
    if impl == "nnx":

        def init():
            return nnx.split(
                deep_nnx(MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH, rngs=nnx.Rngs(0))
            )[1]

        def abstract():
            return nnx.eval_shape(
                lambda: deep_nnx(
                    MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH, rngs=nnx.Rngs(0)
                )
            )
    else:
        if impl == "nnxgen":
            model = deep_linen(MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH)
            keys: Any = key
        else:
            model = bridge.to_linen(
                deep_nnx, MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH
            )
            keys = {"params": key, "dropout": dkey}

        def init():
            return model.init(keys, x)

        def abstract():
            return jax.eval_shape(model.init, keys, x)

    gc.collect()
    rss0, maxrss0 = _rss_bytes(), _maxrss_bytes()
    hwm_ok = _reset_hwm()
    t0 = time.perf_counter()
    v = _block(init())
    cold_s = time.perf_counter() - t0
    if hwm_ok and _hwm_bytes() is not None:
        cold_peak = max(0, _hwm_bytes() - rss0)
    else:  # ru_maxrss cannot be reset: only growth above the import-time peak shows
        cold_peak = max(0, _maxrss_bytes() - max(maxrss0, rss0))
    gc.collect()
    retained = _rss_bytes() - rss0
    leaves = jax.tree_util.tree_leaves(v)
    param_bytes = sum(getattr(a, "nbytes", 0) for a in leaves)
    del v, leaves
    gc.collect()
    v, warm_peak = _peak_of(init)
    del v
    gc.collect()
    abstract()  # warm-up of the trace machinery, so the measured call is steady state
    gc.collect()
    shapes, abstract_peak = _peak_of(abstract)
    sleaves = jax.tree_util.tree_leaves(shapes)
    return {
        "impl": impl,
        "param_bytes": param_bytes,
        "cold_init_s": cold_s,
        "cold_peak_bytes": cold_peak,
        "warm_peak_bytes": warm_peak,
        "retained_bytes": retained,
        "eval_shape_peak_bytes": abstract_peak,
        "eval_shape_leaves": len(sleaves),
        "eval_shape_all_shapedtypestruct": bool(sleaves)
        and all(isinstance(a, jax.ShapeDtypeStruct) for a in sleaves),
    }


def bench_memory(tmpdir: str, log: Callable[[str], None]) -> dict[str, Any]:
    """One child process per implementation, run side by side (RSS is per process;
    nothing is timed here, so sharing the CPUs does not matter)."""
    out = {}
    env = dict(os.environ)
    # Freed large buffers go back to the OS (no dynamic mmap threshold), so the RSS
    # follows live memory rather than glibc's retained heap.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env.setdefault("JAX_PLATFORMS", "cpu")
    t0 = time.perf_counter()
    procs = {}
    for impl in IMPLS:
        child_dir = os.path.join(tmpdir, f"mem_{impl}")  # own copy: no file races
        os.makedirs(child_dir, exist_ok=True)
        procs[impl] = subprocess.Popen(
            [sys.executable, __file__, "--_mem-child", impl, "--_tmpdir", child_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(ROOT),
        )
    for impl, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            out[impl] = {"error": (stderr.strip().splitlines() or ["?"])[-1]}
            log(f"  memory {impl}: FAILED: {stderr[-2000:]}")
            continue
        out[impl] = json.loads(stdout.strip().splitlines()[-1])
    log(f"  memory: {time.perf_counter() - t0:.1f}s")
    return out


# ---------------------------------------------------------------------------
# Profile of the wrapper's eager apply.


def profile_eager(impls: dict[str, Impls], n: int) -> dict[str, Any]:
    """cProfile ``n`` eager applies per (case, mode); entries of nnxgen/runtime.py."""
    runtime_file = os.path.abspath(_rt.__file__)
    report: dict[str, Any] = {}
    for im in impls.values():
        case = im.case
        for mode in case.modes:
            calls = {}
            for impl in ("nnx", "nnxgen"):
                f, args = im.fn(impl, mode)
                _block(f(*args))
                pr = cProfile.Profile()
                t0 = time.perf_counter()
                pr.enable()
                for _ in range(n):
                    _block(f(*args))
                pr.disable()
                wall = (time.perf_counter() - t0) / n
                st = pstats.Stats(pr)
                calls[impl] = {
                    "calls_per_apply": st.total_calls / n,
                    "profiled_ms_per_apply": wall * 1e3,
                }
                if impl == "nnxgen":
                    rows = []
                    for (file, line, fname), (cc, nc, tt, ct, _) in st.stats.items():
                        if os.path.abspath(file) == runtime_file:
                            rows.append(
                                {
                                    "func": f"runtime.py:{line}({fname})",
                                    "ncalls_per_apply": nc / n,
                                    "tottime_us_per_apply": tt / n * 1e6,
                                    "cumtime_us_per_apply": ct / n * 1e6,
                                }
                            )
                    rows.sort(key=lambda r: -r["cumtime_us_per_apply"])
                    top_all = io.StringIO()
                    pstats.Stats(pr, stream=top_all).sort_stats("tottime").print_stats(
                        12
                    )
                    calls[impl]["runtime_entries"] = rows[:14]
                    calls[impl]["top_tottime_text"] = top_all.getvalue()
            report[f"{case.name}/{mode}"] = calls
    return report


# ---------------------------------------------------------------------------
# Output.


def _ratio(d: dict[str, float], impl: str) -> float:
    base = d["nnx"]
    return d[impl] / base if base else float("nan")


def _cell(d: dict[str, float] | None, impl: str, fmt: str) -> str:
    if d is None:
        return "-"
    v = d[impl]
    if impl == "nnx":
        return f"{v:{fmt}}"
    return f"{v:{fmt}} {_ratio(d, impl):5.2f}x"


def _column(res: dict[str, Any], r: dict[str, Any], mode: str, key: str) -> Any:
    """A table cell's timings: init is per case (shown on the eval row), the rest per mode."""
    if key.startswith("init"):
        return res[key] if mode == "eval" else None
    return r[key]


def print_table(results: dict[str, Any]) -> None:
    cols = [
        ("init ms", "init_ms", ".1f"),
        ("1st init ms", "init_first_ms", ".1f"),
        ("trace ms", "trace_ms", ".1f"),
        ("compile ms", "compile_ms", ".0f"),
        ("HLO ops", "hlo_ops", "d"),
        ("jit call us", "call_us", ".0f"),
        ("eager ms", "eager_ms", ".2f"),
    ]

    def rows():
        for res in results["cases"].values():
            for mode, r in res["modes"].items():
                for impl in IMPLS:
                    cells = [
                        _cell(_column(res, r, mode, key), impl, fmt)
                        for _, key, fmt in cols
                    ]
                    yield res["label"], mode, impl, cells
            yield None

    _print_grid(22, [c[0] for c in cols], rows())

    # The same timings as process CPU time (less sensitive to other jobs on the CPUs).
    ccols = [
        ("init", "init_cpu_ms"),
        ("1st init", "init_first_cpu_ms"),
        ("trace", "trace_cpu_ms"),
        ("compile", "compile_cpu_ms"),
        ("jit call", "call_cpu_us"),
        ("eager", "eager_cpu_ms"),
    ]

    def cpu_cell(d: dict[str, float] | None, impl: str) -> str:
        if d is None:
            return "-"
        if impl == "nnx":
            return f"[{d['nnx']:.3g}]"
        return f"{_ratio(d, impl):.2f}x"

    def cpu_rows():
        for name, res in results["cases"].items():
            for mode, r in res["modes"].items():
                for impl in IMPLS:
                    cells = [
                        cpu_cell(_column(res, r, mode, key), impl) for _, key in ccols
                    ]
                    yield name, mode, impl, cells
        yield None

    print("Process-CPU-time ratios vs nnx (same medians; CPU ms of nnx in [])")
    _print_grid(14, [c[0] for c in ccols], cpu_rows())


def _print_grid(width: int, titles: list[str], rows: Iterable[tuple | None]) -> None:
    """A header, then one line per (label, mode, impl, cells) row (label and mode
    on the nnx row only); None prints a blank line."""
    head = f"{'model':<{width}} {'mode':<5} {'impl':<7}" + "".join(
        f" {t:>16}" for t in titles
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        if row is None:
            print()
            continue
        label, mode, impl, cells = row
        first = impl == "nnx"
        print(
            f"{label if first else '':<{width}} {mode if first else '':<5} {impl:<7}"
            + "".join(f" {c:>16}" for c in cells)
        )


def hlo_diff(r: dict[str, Any], impl: str) -> str:
    a, b = r["hlo_hist"]["nnx"], r["hlo_hist"][impl]
    diffs = []
    for op in sorted(set(a) | set(b)):
        d = b.get(op, 0) - a.get(op, 0)
        if d:
            diffs.append(f"{op}{d:+d}")
    return ", ".join(diffs)


def _pair(res: dict[str, Any], key: str, impl: str) -> tuple[float, float]:
    """(CPU-time ratio, wall-time ratio) of ``impl`` vs nnx for timing ``key``."""
    return _ratio(res[key.replace("_ms", "_cpu_ms")], impl), _ratio(res[key], impl)


def check_targets(
    results: dict[str, Any], impl: str = "nnxgen"
) -> list[dict[str, Any]]:
    """Verdicts use process-CPU-time ratios (robust on a shared machine); the
    wall-clock ratios are reported next to them."""
    rows = []
    for name, res in results["cases"].items():
        cpu, wall = _pair(res, "init_ms", impl)
        # The first init of a model in a process runs one eager forward pass (as
        # Linen's init does); what is left once it (its cost taken as pure NNX's
        # eager eval apply) is taken out is the wrapper's own overhead.
        fwd = res["modes"]["eval"]["eager_cpu_ms"]["nnx"]
        first = res["init_first_cpu_ms"]
        rest = (first[impl] - fwd) / first["nnx"]
        rows.append(
            {
                "target": "init",
                "case": name,
                "mode": "-",
                "value": cpu,
                "wall": wall,
                "pass": cpu <= INIT_LIMIT,
                "detail": (
                    f"first init {first[impl] / first['nnx']:.2f}x, "
                    f"minus one eager forward {rest:.2f}x"
                ),
            }
        )
        for mode, r in res["modes"].items():
            hr = _ratio(r["hlo_ops"], impl)
            d = r["hlo_ops"][impl] - r["hlo_ops"]["nnx"]
            rows.append(
                {
                    "target": "hlo",
                    "case": name,
                    "mode": mode,
                    "value": hr,
                    "wall": None,
                    # Equal, or fewer: in training pure NNX also returns its rng
                    # state (key/count), which the wrapper does not write back.
                    "pass": round(hr, 2) <= 1.00,
                    "detail": (
                        f"{r['hlo_ops'][impl]} vs {r['hlo_ops']['nnx']} ops ({d:+d})"
                        + (f": {hlo_diff(r, impl)}" if d else "")
                    ),
                }
            )
            cpu, wall = _pair(r, "trace_ms", impl)
            rows.append(
                {
                    "target": "trace",
                    "case": name,
                    "mode": mode,
                    "value": cpu,
                    "wall": wall,
                    "pass": cpu <= TRACE_LIMIT,
                }
            )
            cpu, wall = _pair(r, "eager_ms", impl)
            rows.append(
                {
                    "target": "eager",
                    "case": name,
                    "mode": mode,
                    "value": cpu,
                    "wall": wall,
                    "pass": cpu <= EAGER_LIMIT,
                }
            )
    return rows


def print_targets(results: dict[str, Any]) -> None:
    for impl in ("nnxgen", "bridge"):
        rows = check_targets(results, impl)
        results.setdefault("targets", {})[impl] = rows
        title = (
            "Targets (nnxgen wrapper vs pure NNX)"
            if impl == "nnxgen"
            else "Same targets for nnx.bridge.to_linen (reference only)"
        )
        print(title + ": verdict on the process-CPU-time ratio, wall-clock ratio in ()")
        for key, desc in TARGETS.items():
            sel = [r for r in rows if r["target"] == key]
            npass = sum(r["pass"] for r in sel)
            print(f"  {desc}: {npass}/{len(sel)} pass")
            for r in sel:
                wall = f" (wall {r['wall']:.2f}x)" if r["wall"] is not None else ""
                extra = f"   {r['detail']}" if r.get("detail") else ""
                print(
                    f"    {'PASS' if r['pass'] else 'FAIL'}  {r['case']:<12} {r['mode']:<5} "
                    f"{r['value']:.2f}x{wall}{extra}"
                )
        print()


def print_memory(mem: dict[str, Any]) -> None:
    mib = 1 / 2**20

    def f(v):
        return "n/a" if v is None else f"{v * mib:8.1f}"

    print(
        f"Init memory: {MEM_DEPTH}-layer MLP, width {MEM_WIDTH}, batch {MEM_BATCH} "
        "(MiB; one fresh subprocess per implementation)"
    )
    print(
        f"{'impl':<7} {'params':>8} {'cold peak':>10} {'warm peak':>10} {'retained':>9} "
        f"{'eval_shape peak':>16} {'eval_shape leaves':>18}"
    )
    for impl, m in mem.items():
        if "error" in m:
            print(f"{impl:<7} ERROR {m['error']}")
            continue
        ok = (
            "ShapeDtypeStruct"
            if m["eval_shape_all_shapedtypestruct"]
            else "NOT all SDS"
        )
        print(
            f"{impl:<7} {f(m['param_bytes']):>8} {f(m['cold_peak_bytes']):>10} "
            f"{f(m['warm_peak_bytes']):>10} {f(m['retained_bytes']):>9} "
            f"{f(m['eval_shape_peak_bytes']):>16} {m['eval_shape_leaves']:>5} {ok}"
        )
    for impl, m in mem.items():
        if "error" in m:
            continue
        es = m["eval_shape_peak_bytes"]
        conc = m["warm_peak_bytes"]
        if es is not None and conc:
            verdict = (
                "PASS"
                if es < 0.05 * m["param_bytes"] and m["eval_shape_all_shapedtypestruct"]
                else "FAIL"
            )
            print(
                f"  {verdict}  {impl}: eval_shape(init) allocates {es * mib:.1f} MiB "
                f"vs {conc * mib:.1f} MiB for a concrete init "
                f"({es / conc:.1%}); leaves are "
                f"{'all' if m['eval_shape_all_shapedtypestruct'] else 'NOT all'} ShapeDtypeStruct"
            )
    print()


def print_profile(prof: dict[str, Any], n: int) -> None:
    print(f"cProfile of eager apply ({n} applies each; per-apply figures)")
    for key, d in prof.items():
        nn_, w = d["nnx"], d["nnxgen"]
        print(
            f"== {key}: Python function calls per apply: nnx {nn_['calls_per_apply']:.0f}, "
            f"nnxgen {w['calls_per_apply']:.0f} "
            f"({w['calls_per_apply'] / nn_['calls_per_apply']:.2f}x); "
            f"profiled ms/apply nnx {nn_['profiled_ms_per_apply']:.2f}, "
            f"nnxgen {w['profiled_ms_per_apply']:.2f}"
        )
        print(
            f"   {'nnxgen/runtime.py entry':<44} {'calls':>6} {'tottime us':>11} {'cumtime us':>11}"
        )
        for r in w["runtime_entries"]:
            print(
                f"   {r['func']:<44} {r['ncalls_per_apply']:>6.1f} {r['tottime_us_per_apply']:>11.1f} "
                f"{r['cumtime_us_per_apply']:>11.1f}"
            )
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (~1 minute)")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument(
        "--models",
        default="mlp8,mlp_bn,transformer,cnn",
        help="comma-separated subset of: mlp8,mlp_bn,transformer,cnn",
    )
    mem = p.add_mutually_exclusive_group()
    mem.add_argument(
        "--memory",
        dest="memory",
        action="store_true",
        default=None,
        help="run the memory subprocesses (default: yes, but not with --quick)",
    )
    mem.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the memory subprocesses",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the wrapper's eager apply and list nnxgen/runtime.py hot spots",
    )
    p.add_argument("--_mem-child", dest="mem_child", help=argparse.SUPPRESS)
    p.add_argument("--_tmpdir", dest="tmpdir", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")

    if a.mem_child:
        print(json.dumps(mem_child(a.mem_child, a.tmpdir)))
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    reps = QUICK if a.quick else FULL
    with tempfile.TemporaryDirectory(prefix="nnxgen_bench_") as tmpdir:
        wanted = a.models.split(",")
        cases = [c for c in make_cases(tmpdir) if c.name in wanted]
        results: dict[str, Any] = {
            "env": {
                "python": platform.python_version(),
                "jax": jax.__version__,
                "flax": importlib.import_module("flax").__version__,
                "nnxgen": getattr(nnxgen, "__version__", "?"),
                "backend": jax.default_backend(),
                "cpus": os.cpu_count(),
                "quick": a.quick,
                "reps": dataclasses.asdict(reps),
                "import_jax_flax_nnxgen_s": IMPORT_S,
            },
            "cases": {},
        }
        log(f"benchmarking {len(cases)} models ({'quick' if a.quick else 'full'}) ...")
        impls = {}
        for case in cases:
            t0 = time.perf_counter()
            impls[case.name] = Impls(case)
            log(f"  {case.name}: setup {time.perf_counter() - t0:.1f}s")
            results["cases"][case.name] = bench_case(case, reps, log, impls[case.name])
        if a.memory if a.memory is not None else not a.quick:
            results["memory"] = bench_memory(tmpdir, log)
        if a.profile:
            n_prof = 10 if a.quick else 30
            t0 = time.perf_counter()
            results["profile"] = profile_eager(impls, n_prof)
            log(f"  profile: {time.perf_counter() - t0:.1f}s")
        results["env"]["total_s"] = time.perf_counter() - t_start

        e = results["env"]
        print(
            f"nnxgen benchmark: jax {e['jax']}, flax {e['flax']}, python {e['python']}, "
            f"backend {e['backend']}, {e['cpus']} CPUs, {'quick' if a.quick else 'full'} run "
            f"(reps {e['reps']})"
        )
        print(
            "Cells: absolute median, then the ratio to pure NNX measured in the same run.\n"
        )
        print_table(results)
        print_targets(results)
        if "memory" in results:
            print_memory(results["memory"])
        else:
            print(
                "Init memory: skipped (default with --quick; pass --memory to include it)\n"
            )
        if "profile" in results:
            print_profile(results["profile"], n_prof)
        print(f"total {results['env']['total_s']:.0f}s")
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1, default=str))
            print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
