"""Benchmark nnxgen's generated NNX wrappers of Linen modules against plain Linen and ToNNX.

Run from the repository root::

    .venv/bin/python bench/linen_bench.py                  # full run (~1.5 minutes on 2 cores)
    .venv/bin/python bench/linen_bench.py --quick          # fewer repetitions (~30 s)
    .venv/bin/python bench/linen_bench.py --json out.json  # + every number as JSON
    .venv/bin/python bench/linen_bench.py --cases mlp,cnn --profile

Cases (``linen_cases.py``): the three generated examples -- ``MLP`` (BatchNorm +
Dropout, ``train``; eval and train), ``Encoder`` (attention, sown output, logically
partitioned kernel; ``deterministic=True``) and ``CNN`` (Conv + BatchNorm;
``use_running_average`` True = eval, False = train) -- and an 8-layer Linen
Dense+relu MLP of width 256, written to a temp dir and wrapped in-process with
``nnxgen.generate.generate``. The Encoder runs under ``nnx.use_eager_sharding(False)``:
with flax's default eager sharding and no mesh, its logically partitioned kernel
cannot become an NNX variable (in ToNNX as in nnxgen: flax's converter raises).
Three implementations of each:

* ``linen``:  plain Linen, ``module.apply(variables, x, <mode arg>)``; in train
              ``rngs={'dropout': key}`` (if it has dropout), ``mutable=['batch_stats']``,
              returning ``(y, updates)``. The baseline: every ratio is to it.
* ``nnxgen``: the generated wrapper, ``Wrapper(..., rngs=nnx.Rngs(0, dropout=1))``
              (``dropout=1`` where the model has dropout), ``.eval()`` / ``.train()``
              once, then ``model(x)``; the mode argument follows the model's mode.
              Every call applies with every collection but ``params`` mutable and
              writes back the ones the call changed (batch statistics in
              training, sown ``intermediates``; nothing else in eval).
* ``tonnx``:  ``nnx.bridge.ToNNX(LinenModule(...), rngs=nnx.Rngs(0, dropout=1))``,
              with the mode passed by hand as its users must: ``model(x, train=...)``,
              and ``mutable=['batch_stats']`` in training (eval: no write-back).

Both NNX implementations are jitted the same, the functional NNX way:
``graphdef, state = nnx.split(model)`` once, and the step is
``nnx.merge(graphdef, state)(x)`` (eval) or that plus
``nnx.state(m, nnx.Not(nnx.Param))`` (train: batch stats and rng counters, the
analogue of ``mutable=``) inside ``jax.jit``.

Columns (medians over repetitions, interleaved; ``(r x)`` = ratio to ``linen`` measured
in the same run):

* init:        eager initialisation of a fresh model. linen: ``module.init(keys, x,
               <eval mode>)``; nnxgen: the constructor + ``nnx.bridge.lazy_init(model,
               x)`` (the same as its first call); tonnx: ``ToNNX(...).lazy_init(x, ...)``.
               Shown on each case's first mode row.
* trace+lower: ``jax.jit(step).lower(*args)``, a fresh function object each time.
* lowered ops: instructions of the lowered, unoptimised HLO
               (``lowered.as_text(dialect='hlo')``), counted as ``harness.hlo_ops``.
* HLO ops:     instructions of the compiled, optimised HLO (``compiled.as_text()``),
               every computation (ENTRY, fusions, ...), as ``bench.py`` counts them.
* jit call:    steady call of the compiled step (after warm-up, block_until_ready).
* nnx.jit:     steady call of ``nnx.jit(lambda m, x: m(x, ...))(model, x)`` on the
               live model (NNX's convenience transform; its Python graph traversal
               runs on every call). linen: the ``jax.jit``-ed apply (Linen's idiom).
* eager:       un-jitted call: linen ``apply``; NNX ``model(x, ...)`` on the live
               model (variables read, converted, written back on every call).

Below the table: the same timings as process-CPU-time ratios (less sensitive to
other jobs on the CPUs), nnxgen / tonnx ratios, and verdict lines: HLO op counts
equal (nnxgen vs linen, nnxgen vs tonnx), nnxgen's output equal to ToNNX's (same
seeds), and every timing where nnxgen is slower than ToNNX by more than 5% in both
process CPU and wall-clock time. ``--profile`` adds a cProfile of the eager calls
(the runtime's and flax's converter entries). Eager timings on a shared 2-core
machine vary by ~10% from run to run; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import importlib
import json
import os
import platform
import pstats
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jax
import numpy as np
from flax import nnx
from harness import FULL, QUICK, Reps, _timed, hlo_ops, interleaved, med_wc
from linen_cases import ALL_CASES, IMPLS, PreparedLinen, make_cases

import nnxgen

BASE = "linen"
#: nnxgen counts as slower than tonnx above this ratio, in process CPU time AND
#: wall-clock time (one of the two alone is mostly noise on shared CPUs).
SLOWER = 1.05
#: The full run repeats more than bench.py's (these cases are cheaper, the
#: wrapper-vs-ToNNX differences small).
FULL_LINEN = dataclasses.replace(FULL, init=31, trace=15, eager=15)
NOTE_TRAIN_HLO = (
    "(train: HLO ops beyond linen's are NNX's rng handling, the same in ToNNX: the "
    "step draws its keys from the model's nnx.Rngs (threefry fold_in of the dropout "
    "stream) and returns the advanced rng counters, where Linen takes the dropout key "
    "as an argument)"
)

# (title, key, format) of the timing columns; "ops" columns are integers.
COLUMNS = [
    ("init ms", "init_ms", ".2f"),
    ("trace+lower ms", "trace_ms", ".1f"),
    ("lowered ops", "lowered_ops", "d"),
    ("HLO ops", "hlo_ops", "d"),
    ("jit call us", "call_us", ".0f"),
    ("nnx.jit us", "nnxjit_us", ".0f"),
    ("eager ms", "eager_ms", ".3f"),
]
TIMINGS = [k for _, k, _ in COLUMNS if not k.endswith("_ops")]


def _block(x: Any) -> Any:
    return jax.block_until_ready(x)


def _output(out: Any) -> Any:
    """``y`` of a step's output (train steps return ``(y, state)``)."""
    return out[0] if isinstance(out, tuple) else out


# ---------------------------------------------------------------------------
# Measuring.


def bench_case(p: PreparedLinen, reps: Reps, log: Callable[[str], None]) -> dict:
    t_case = time.perf_counter()
    res: dict[str, Any] = {"label": p.case.label, "modes": {}}
    fns = {impl: p.init_fn(impl) for impl in IMPLS}
    for f in fns.values():
        _block(jax.tree.leaves(nnx_state(f())))
    samples = interleaved(
        {k: functools.partial(_timed, _state_of(f)) for k, f in fns.items()},
        reps.init,
    )
    res["init_ms"], res["init_cpu_ms"] = med_wc(samples, 1e3)
    phases = [f"init {time.perf_counter() - t_case:.1f}s"]
    for mode in p.case.modes:
        t0 = time.perf_counter()
        res["modes"][mode] = bench_mode(p, mode, reps)
        phases.append(f"{mode} {time.perf_counter() - t0:.1f}s")
    log(f"  {p.case.name}: {time.perf_counter() - t_case:.1f}s ({', '.join(phases)})")
    return res


def nnx_state(obj: Any) -> Any:
    """Something block_until_ready can wait on: a Linen variables dict as is, the
    state of an NNX model."""
    return nnx.state(obj) if isinstance(obj, nnx.Module) else obj


def _state_of(f: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: jax.tree.leaves(nnx_state(f()))


def bench_mode(p: PreparedLinen, mode: str, reps: Reps) -> dict[str, Any]:
    r: dict[str, Any] = {}
    lowered: dict[str, Any] = {}

    def lower(impl: str) -> tuple[float, float]:
        f, args = p.step(impl, mode)
        c0, t0 = time.process_time(), time.perf_counter()
        lowered[impl] = jax.jit(f).lower(*args)
        return time.perf_counter() - t0, time.process_time() - c0

    for impl in IMPLS:  # warm-up (first traces fill caches)
        lower(impl)
    samples = interleaved({k: functools.partial(lower, k) for k in IMPLS}, reps.trace)
    r["trace_ms"], r["trace_cpu_ms"] = med_wc(samples, 1e3)

    compiled = {k: lo.compile() for k, lo in lowered.items()}
    lhist = {k: hlo_ops(lo.as_text(dialect="hlo")) for k, lo in lowered.items()}
    hist = {k: hlo_ops(c.as_text()) for k, c in compiled.items()}
    r["lowered_ops"] = {k: sum(h.values()) for k, h in lhist.items()}
    r["hlo_ops"] = {k: sum(h.values()) for k, h in hist.items()}
    r["lowered_hist"] = {k: dict(sorted(h.items())) for k, h in lhist.items()}
    r["hlo_hist"] = {k: dict(sorted(h.items())) for k, h in hist.items()}

    # Same numbers: nnxgen and ToNNX draw the same keys from the same seeds.
    outs = {}
    ready: dict[str, Callable[[], Any]] = {}
    for impl in IMPLS:
        _, args = p.step(impl, mode)
        ready[impl] = functools.partial(compiled[impl], *args)
        for _ in range(3):
            outs[impl] = _block(ready[impl]())
    r["nnxgen_output_equals_tonnx"] = bool(
        np.allclose(_output(outs["nnxgen"]), _output(outs["tonnx"]), atol=1e-5)
    )

    def inner(fn: Callable[[], Any]) -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(reps.call_inner):
            out = fn()
        _block(out)
        n = reps.call_inner
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    samples = interleaved(
        {k: functools.partial(inner, ready[k]) for k in IMPLS}, reps.call_samples
    )
    r["call_us"], r["call_cpu_us"] = med_wc(samples, 1e6)

    jitted = {k: p.nnx_jit(k, mode) for k in IMPLS}
    for f in jitted.values():
        for _ in range(3):
            _block(f())
    samples = interleaved(
        {k: functools.partial(inner, f) for k, f in jitted.items()}, reps.call_samples
    )
    r["nnxjit_us"], r["nnxjit_cpu_us"] = med_wc(samples, 1e6)

    eager = {k: p.eager(k, mode) for k in IMPLS}
    for f in eager.values():
        for _ in range(2):
            _block(f())
    samples = interleaved(
        {k: functools.partial(_timed, f) for k, f in eager.items()}, reps.eager
    )
    r["eager_ms"], r["eager_cpu_ms"] = med_wc(samples, 1e3)
    return r


def profile_eager(prepared: dict[str, PreparedLinen], n: int) -> dict[str, Any]:
    """cProfile ``n`` eager calls of nnxgen and tonnx per (case, mode)."""
    out: dict[str, Any] = {}
    for name, p in prepared.items():
        with p.case.context():
            for mode in p.case.modes:
                entry = {}
                for impl in ("nnxgen", "tonnx"):
                    f = p.eager(impl, mode)
                    _block(f())
                    pr = cProfile.Profile()
                    pr.enable()
                    for _ in range(n):
                        _block(f())
                    pr.disable()
                    st = pstats.Stats(pr)
                    rows = sorted(
                        (
                            (
                                tt / n * 1e6,
                                ct / n * 1e6,
                                nc / n,
                                f"{Path(fl).name}:{ln}({fn})",
                            )
                            for (fl, ln, fn), (_, nc, tt, ct, _) in st.stats.items()
                        ),
                        reverse=True,
                    )
                    entry[impl] = {
                        "calls_per_apply": st.total_calls / n,
                        "top_tottime": [
                            {"func": f, "tottime_us": t, "cumtime_us": c, "ncalls": k}
                            for t, c, k, f in rows[:10]
                        ],
                        "runtime_cumtime": [
                            {"func": f, "tottime_us": t, "cumtime_us": c, "ncalls": k}
                            for t, c, k, f in sorted(rows, key=lambda r: -r[1])
                            if f.startswith(("_linen.py", "_compat.py", "variables.py"))
                        ][:10],
                    }
                out[f"{name}/{mode}"] = entry
    return out


# ---------------------------------------------------------------------------
# Output.


def _cell(d: dict[str, float] | None, impl: str, fmt: str) -> str:
    if d is None:
        return ""
    v = d[impl]
    if impl == BASE:
        return f"{v:{fmt}}"
    base = d[BASE]
    return f"{v:{fmt}} ({v / base if base else float('nan'):.2f}x)"


def _value(res: dict, r: dict, mode: str, key: str) -> dict | None:
    """Init is per case: shown on the case's first mode row."""
    if key.startswith("init"):
        return res[key] if mode == next(iter(res["modes"])) else None
    return r[key]


def _md_table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def print_tables(results: dict[str, Any]) -> None:
    rows = []
    for name, res in results["cases"].items():
        for mode, r in res["modes"].items():
            for impl in IMPLS:
                first = impl == IMPLS[0]
                rows.append(
                    [res["label"] if first else "", mode if first else "", impl]
                    + [_cell(_value(res, r, mode, k), impl, f) for _, k, f in COLUMNS]
                )
    print("Wall-clock medians; (r x) = ratio to linen in the same run.\n")
    _md_table(["case", "mode", "impl"] + [t for t, _, _ in COLUMNS], rows)

    def cpu_key(k: str) -> str:
        return k.replace("_ms", "_cpu_ms").replace("_us", "_cpu_us")

    timing_cols = [(t, k) for t, k, _ in COLUMNS if k in TIMINGS]
    rows = []
    for name, res in results["cases"].items():
        for mode, r in res["modes"].items():
            for impl in IMPLS:
                cells = []
                for _, k in timing_cols:
                    d = _value(res, r, mode, cpu_key(k))
                    if d is None:
                        cells.append("")
                    elif impl == BASE:
                        cells.append(f"[{d[BASE]:.3g}]")
                    else:
                        cells.append(f"{d[impl] / d[BASE]:.2f}x")
                first = impl == IMPLS[0]
                rows.append(
                    [name if first else "", mode if first else "", impl] + cells
                )
    print("Process-CPU-time ratios to linen (linen's CPU ms / us in []).\n")
    _md_table(["case", "mode", "impl"] + [t for t, _ in timing_cols], rows)

    rows = []
    for name, res in results["cases"].items():
        for mode, r in res["modes"].items():
            cells = []
            for _, k in timing_cols:
                d, c = _value(res, r, mode, k), _value(res, r, mode, cpu_key(k))
                if d is None:
                    cells.append("")
                else:
                    w = d["nnxgen"] / d["tonnx"]
                    cells.append(f"{c['nnxgen'] / c['tonnx']:.2f}x (wall {w:.2f}x)")
            rows.append([name, mode, "nnxgen/tonnx"] + cells)
    print("nnxgen / tonnx: process-CPU-time ratio (wall-clock ratio).\n")
    _md_table(["case", "mode", "ratio"] + [t for t, _ in timing_cols], rows)


def _hist_diff(a: dict[str, int], b: dict[str, int]) -> str:
    diffs = [
        f"{op}{b.get(op, 0) - a.get(op, 0):+d}"
        for op in sorted(set(a) | set(b))
        if b.get(op, 0) != a.get(op, 0)
    ]
    return ", ".join(diffs)


def verdicts(results: dict[str, Any]) -> list[str]:
    lines = []
    train_diff = False
    for name, res in results["cases"].items():
        for mode, r in res["modes"].items():
            for ops, hist, what in (
                ("hlo_ops", "hlo_hist", "HLO ops"),
                ("lowered_ops", "lowered_hist", "lowered HLO ops"),
            ):
                for other in ("linen", "tonnx"):
                    a, b = r[ops][other], r[ops]["nnxgen"]
                    diff = _hist_diff(r[hist][other], r[hist]["nnxgen"])
                    train_diff |= a != b and other == "linen" and mode == "train"
                    lines.append(
                        f"{name}/{mode}: nnxgen {what} == {other}: "
                        f"{'yes' if a == b else 'no'} ({b} vs {a}"
                        + (f"; {diff}" if diff else "")
                        + ")"
                    )
            lines.append(
                f"{name}/{mode}: nnxgen output == tonnx (same seeds): "
                f"{'yes' if r['nnxgen_output_equals_tonnx'] else 'no'}"
            )
    if train_diff:
        lines.append(NOTE_TRAIN_HLO)
    slower = []
    for name, res in results["cases"].items():
        for mode, r in res["modes"].items():
            for t, k, _ in COLUMNS:
                if k not in TIMINGS:
                    continue
                d = _value(res, r, mode, k)
                if d is None:
                    continue
                c = _value(
                    res, r, mode, k.replace("_ms", "_cpu_ms").replace("_us", "_cpu_us")
                )
                ratio, wall = c["nnxgen"] / c["tonnx"], d["nnxgen"] / d["tonnx"]
                if ratio > SLOWER and wall > SLOWER:
                    slower.append(
                        f"{name}/{mode}: nnxgen {t} slower than tonnx: {ratio:.2f}x CPU "
                        f"(wall {wall:.2f}x; "
                        f"{d['nnxgen']:.3g} vs {d['tonnx']:.3g})"
                    )
    lines.append(
        f"nnxgen slower than tonnx (> {SLOWER:.2f}x in CPU and wall time): "
        + (f"{len(slower)} case(s)" if slower else "none")
    )
    lines += ["  " + s for s in slower]
    return lines


def print_profile(prof: dict[str, Any], n: int) -> None:
    print(f"cProfile of eager calls ({n} calls each; per-call figures, us)\n")
    for key, d in prof.items():
        g, t = d["nnxgen"], d["tonnx"]
        print(
            f"== {key}: Python function calls per call: nnxgen {g['calls_per_apply']:.0f}, "
            f"tonnx {t['calls_per_apply']:.0f}"
        )
        for impl in ("nnxgen", "tonnx"):
            print(f"   {impl} converter / runtime entries by cumtime:")
            for e in d[impl]["runtime_cumtime"]:
                print(
                    f"     {e['func']:<58} {e['ncalls']:>6.1f} calls "
                    f"{e['tottime_us']:>8.1f} tot {e['cumtime_us']:>9.1f} cum"
                )
    print()


# ---------------------------------------------------------------------------
# Command line.


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (~30 s)")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON")
    ap.add_argument(
        "--cases",
        default=",".join(ALL_CASES),
        help=f"comma-separated subset of: {','.join(ALL_CASES)}",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the eager calls of nnxgen and tonnx (converter hot spots)",
    )
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    reps = QUICK if a.quick else FULL_LINEN
    wanted = a.cases.split(",")
    unknown = set(wanted) - set(ALL_CASES)
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
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
        },
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="nnxgen_linen_bench_") as tmpdir:
        cases = [c for c in make_cases(tmpdir) if c.name in wanted]
        log(f"benchmarking {len(cases)} cases ({'quick' if a.quick else 'full'}) ...")
        prepared = {}
        for case in cases:
            with case.context():
                t0 = time.perf_counter()
                prepared[case.name] = case.prepare()
                log(f"  {case.name}: setup {time.perf_counter() - t0:.1f}s")
                results["cases"][case.name] = bench_case(prepared[case.name], reps, log)
        if a.profile:
            n_prof = 10 if a.quick else 30
            results["profile"] = profile_eager(prepared, n_prof)
    results["env"]["total_s"] = time.perf_counter() - t_start

    e = results["env"]
    print(
        f"nnxgen Linen->NNX benchmark: jax {e['jax']}, flax {e['flax']}, "
        f"python {e['python']}, backend {e['backend']}, {e['cpus']} CPUs, "
        f"{'quick' if a.quick else 'full'} run (reps {e['reps']})\n"
    )
    print_tables(results)
    results["verdicts"] = verdicts(results)
    print("Verdicts:")
    for line in results["verdicts"]:
        print("  " + line)
    print()
    if "profile" in results:
        print_profile(results["profile"], n_prof)
    print(f"total {results['env']['total_s']:.0f}s")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
