"""The benchmark's harness: timing, HLO op counting, memory and profile.

``bench_case`` times a prepared case (``cases.Prepared``): init, and per mode
trace+lower, compile (HLO ops), steady jitted call and eager apply, for every
implementation that can run it. See ``bench.py`` for what each column measures.
"""

from __future__ import annotations

import collections
import cProfile
import dataclasses
import functools
import gc
import io
import json
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from cases import Prepared, setup_deep_mlp
from flax import nnx
from flax.nnx import bridge

import nnxgen.runtime as _rt

ROOT = Path(__file__).resolve().parent.parent
BENCH_PY = Path(__file__).resolve().parent / "bench.py"

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


def case_reps(reps: Reps, caps: dict[str, int]) -> Reps:
    """``reps`` with a case's caps (``Case.max_reps``) applied."""
    return dataclasses.replace(
        reps, **{k: min(getattr(reps, k), v) for k, v in caps.items()}
    )


def bench_case(im: Prepared, reps: Reps, log: Callable[[str], None]) -> dict[str, Any]:
    case = im.case
    reps = case_reps(reps, case.max_reps)
    t_case = time.perf_counter()
    res: dict[str, Any] = {"label": case.label, "modes": {}}
    if case.missing:
        res["missing"] = dict(case.missing)
    if case.max_reps:
        res["reps"] = dataclasses.asdict(reps)
    res["init_forward_mode"] = case.init_forward_mode

    # init (eager): warm-up once, then interleaved medians.
    # "nnxgen_first": an init whose forward pass nnxgen has not seen yet (the
    # first init of a model in a process), which runs the forward like Linen.
    fns = {impl: im.init_fn(impl) for impl in im.impls}
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


def bench_mode(
    im: Prepared, mode: str, reps: Reps, phases: list[str]
) -> dict[str, Any]:
    """trace+lower, compile, HLO ops, steady call and eager apply of one mode."""
    r: dict[str, Any] = {}
    impls = im.impls
    t_phase = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal t_phase
        phases.append(f"{mode} {what} {time.perf_counter() - t_phase:.1f}s")
        t_phase = time.perf_counter()

    # trace+lower with a fresh function object every repetition; the last
    # ``reps.compile`` lowerings are also compiled (each compile is fresh too).
    lowered: dict[str, list] = {k: [] for k in impls}

    def lower(impl):
        f, args = im.fn(impl, mode)
        c0, t0 = time.process_time(), time.perf_counter()
        lo = jax.jit(f).lower(*args)
        dt = time.perf_counter() - t0, time.process_time() - c0
        lowered[impl].append(lo)
        del lowered[impl][: -reps.compile]
        return dt

    for impl in impls:  # warm-up: the first trace fills nnxgen's graphdef cache etc.
        lower(impl)
    samples = interleaved({k: functools.partial(lower, k) for k in impls}, reps.trace)
    r["trace_ms"], r["trace_cpu_ms"] = med_wc(samples, 1e3)
    lap("trace")

    compiled: dict[str, Any] = {}

    def compile_(impl):
        lo = lowered[impl].pop()
        c0, t0 = time.process_time(), time.perf_counter()
        compiled[impl] = lo.compile()
        return time.perf_counter() - t0, time.process_time() - c0

    samples = interleaved(
        {k: functools.partial(compile_, k) for k in impls}, reps.compile
    )
    r["compile_ms"], r["compile_cpu_ms"] = med_wc(samples, 1e3)
    hist = {k: hlo_ops(compiled[k].as_text()) for k in impls}
    r["hlo_ops"] = {k: sum(h.values()) for k, h in hist.items()}
    r["hlo_hist"] = {k: dict(sorted(h.items())) for k, h in hist.items()}
    lap("compile")

    # Steady call of the compiled function (the jit fast path is ~5us cheaper per
    # call, the same for every implementation).
    ready = {}
    for impl in impls:
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
        {k: functools.partial(call, k) for k in impls}, reps.call_samples
    )
    r["call_us"], r["call_cpu_us"] = med_wc(samples, 1e6)
    lap("call")

    # Eager (un-jitted) apply.
    eager = {}
    for impl in impls:
        f, args = im.fn(impl, mode)
        for _ in range(im.case.eager_warmup):
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
MEM_IMPLS = ("nnx", "nnxgen", "bridge")


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
    for impl in MEM_IMPLS:
        child_dir = os.path.join(tmpdir, f"mem_{impl}")  # own copy: no file races
        os.makedirs(child_dir, exist_ok=True)
        procs[impl] = subprocess.Popen(
            [
                sys.executable,
                str(BENCH_PY),
                "--_mem-child",
                impl,
                "--_tmpdir",
                child_dir,
            ],
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


def profile_eager(impls: dict[str, Prepared], n: int) -> dict[str, Any]:
    """cProfile ``n`` eager applies per (case, mode); entries of nnxgen's runtime
    (``nnxgen/runtime.py`` or the ``nnxgen/runtime/`` package)."""
    runtime_file = os.path.abspath(_rt.__file__)
    if os.path.basename(runtime_file) == "__init__.py":  # a package: all its files
        runtime_dir = os.path.dirname(runtime_file) + os.sep

        def in_runtime(f: str) -> bool:
            return os.path.abspath(f).startswith(runtime_dir)

        def where(f: str) -> str:
            return "runtime/" + os.path.relpath(os.path.abspath(f), runtime_dir)
    else:

        def in_runtime(f: str) -> bool:
            return os.path.abspath(f) == runtime_file

        def where(f: str) -> str:
            return "runtime.py"

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
                        if in_runtime(file):
                            rows.append(
                                {
                                    "func": f"{where(file)}:{line}({fname})",
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
