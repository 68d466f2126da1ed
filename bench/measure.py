"""The measurements of a prepared case, either direction: the columns of the tables.

A prepared case (``impls_nnx_to_linen.Prepared``, ``cases_linen_to_nnx.PreparedLinen``)
gives ``impls``, ``init_fn(impl)``, ``fn(impl, mode)`` (a FRESH pure function and
its arguments), ``eager(impl, mode)`` and, for Linen → NNX, ``nnx_jit(impl, mode)``.
A :class:`Spec` says which columns a direction has. Per case and mode (medians of
interleaved repetitions, wall and process CPU time):

* init:     ``init_fn`` repeated (``first_init``: also nnxgen's with its caches
            cleared before every repetition, the first init of a model in a process);
* trace:    ``jax.jit(f).lower(...)`` with a fresh function object every repetition;
* compile:  ``lowered.compile()`` (timed only with ``time_compile``);
* HLO ops:  instructions in every computation of the optimized module
            ``compiled.as_text()`` (``lowered_ops``: also of the lowered, unoptimised
            ``lowered.as_text(dialect='hlo')``);
* jit call: steady call of the compiled function (after warm-up, blocking);
* nnx.jit:  (``nnx_jit``) steady call of ``nnx.jit`` on the live model;
* eager:    the un-jitted call.

NNX → Linen cases also time Linen's floor (``floor_init`` / ``floor_eager``: the
wrapper class's own Linen ``init`` / ``apply`` with the runtime's work taken out)
interleaved with the init and eager repetitions: ``floor_init_ms`` and, per mode,
``floor_eager_ms``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from harness import (
    Reps,
    block,
    capped,
    hlo_ops,
    interleaved,
    med_wc,
    profile_calls,
    source_locator,
    stats_text,
    timed,
    timed_inner,
)

import nnxgen.runtime as rt


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a direction measures beyond the common columns."""

    base: str
    first_init: bool = False
    time_compile: bool = False
    lowered_ops: bool = False
    nnx_jit: bool = False
    #: two implementations whose outputs must be equal (same seeds)
    same_output: tuple[str, str] | None = None
    profile_impls: tuple[str, str] = ("nnx", "nnxgen")
    #: files outside nnxgen's runtime whose profile entries are listed too
    profile_extra: tuple[str, ...] = ()
    profile_rows: int = 14


NNX_TO_LINEN = Spec(base="nnx", first_init=True, time_compile=True)
LINEN_TO_NNX = Spec(
    base="linen",
    lowered_ops=True,
    nnx_jit=True,
    same_output=("nnxgen", "tonnx"),
    profile_impls=("nnxgen", "tonnx"),
    profile_extra=("bridge/variables.py",),
    profile_rows=10,
)


def _output(out: Any) -> Any:
    """``y`` of a step's output (train steps return ``(y, state)``)."""
    return out[0] if isinstance(out, tuple) else out


def measure_case(
    p: Any, reps: Reps, log: Callable[[str], None], spec: Spec
) -> dict[str, Any]:
    """Init and, per mode, every other column of one prepared case."""
    case = p.case
    reps = capped(reps, case.max_reps)
    t_case = time.perf_counter()
    res: dict[str, Any] = {"label": case.label, "modes": {}}
    if case.missing:
        res["missing"] = dict(case.missing)
    if case.max_reps:
        res["reps"] = dataclasses.asdict(reps)
    if spec.first_init:
        res["init_forward_mode"] = case.init_forward_mode

    fns = {impl: p.init_fn(impl) for impl in p.impls}
    if spec.first_init:
        # An init whose forward pass nnxgen has not seen yet (the first init of a
        # model in a process), which runs the forward like Linen.
        wrapper_init = fns["nnxgen"]

        def first_init():
            rt.clear_cache()
            return wrapper_init()

        fns["nnxgen_first"] = first_init
    # Linen's floor (NNX → Linen cases only; see impls_nnx_to_linen)
    floor = getattr(p, "floor_init", lambda: None)()
    if floor is not None:
        fns["linen_floor"] = floor
    for f in fns.values():
        block(f())
    samples = interleaved(
        {k: functools.partial(timed, f) for k, f in fns.items()}, reps.init
    )
    wall, cpu = med_wc(samples, 1e3)
    if floor is not None:
        res["floor_init_ms"], res["floor_init_cpu_ms"] = (
            d.pop("linen_floor") for d in (wall, cpu)
        )
    if spec.first_init:
        res["init_first_ms"], res["init_first_cpu_ms"] = (
            {**d, "nnxgen": d.pop("nnxgen_first")} for d in (wall, cpu)
        )
    res["init_ms"], res["init_cpu_ms"] = wall, cpu

    phases = [f"init {time.perf_counter() - t_case:.1f}s"]
    for mode in case.modes:
        res["modes"][mode] = measure_mode(p, mode, reps, spec, phases)
    log(f"  {case.name}: {time.perf_counter() - t_case:.1f}s ({', '.join(phases)})")
    return res


def measure_mode(
    p: Any, mode: str, reps: Reps, spec: Spec, phases: list[str]
) -> dict[str, Any]:
    """trace+lower, compile, HLO ops, steady call(s) and eager call of one mode."""
    r: dict[str, Any] = {}
    impls = p.impls
    t_phase = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal t_phase
        phases.append(f"{mode} {what} {time.perf_counter() - t_phase:.1f}s")
        t_phase = time.perf_counter()

    # trace+lower with a fresh function object every repetition; the last
    # ``keep`` lowerings are compiled (each compile is fresh too).
    keep = reps.compile if spec.time_compile else 1
    lowered: dict[str, list] = {k: [] for k in impls}

    def lower(impl: str) -> tuple[float, float]:
        f, args = p.fn(impl, mode)
        c0, t0 = time.process_time(), time.perf_counter()
        lo = jax.jit(f).lower(*args)
        dt = time.perf_counter() - t0, time.process_time() - c0
        lowered[impl].append(lo)
        del lowered[impl][:-keep]
        return dt

    for impl in impls:  # warm-up: the first trace fills nnxgen's caches etc.
        lower(impl)
    samples = interleaved({k: functools.partial(lower, k) for k in impls}, reps.trace)
    r["trace_ms"], r["trace_cpu_ms"] = med_wc(samples, 1e3)
    lap("trace")

    if spec.lowered_ops:
        lhist = {k: hlo_ops(lowered[k][-1].as_text(dialect="hlo")) for k in impls}
        r["lowered_ops"] = {k: sum(h.values()) for k, h in lhist.items()}
        r["lowered_hist"] = {k: dict(sorted(h.items())) for k, h in lhist.items()}
    compiled: dict[str, Any] = {}
    if spec.time_compile:

        def compile_(impl: str) -> tuple[float, float]:
            lo = lowered[impl].pop()
            c0, t0 = time.process_time(), time.perf_counter()
            compiled[impl] = lo.compile()
            return time.perf_counter() - t0, time.process_time() - c0

        samples = interleaved(
            {k: functools.partial(compile_, k) for k in impls}, reps.compile
        )
        r["compile_ms"], r["compile_cpu_ms"] = med_wc(samples, 1e3)
    else:
        compiled = {k: lowered[k][-1].compile() for k in impls}
    hist = {k: hlo_ops(compiled[k].as_text()) for k in impls}
    r["hlo_ops"] = {k: sum(h.values()) for k, h in hist.items()}
    r["hlo_hist"] = {k: dict(sorted(h.items())) for k, h in hist.items()}
    lap("compile")

    # Steady call of the compiled function (the jit fast path is ~5us cheaper per
    # call, the same for every implementation).
    ready: dict[str, Callable[[], Any]] = {}
    outs: dict[str, Any] = {}
    for impl in impls:
        _, args = p.fn(impl, mode)
        ready[impl] = functools.partial(compiled[impl], *args)
        for _ in range(3):
            outs[impl] = block(ready[impl]())
    if spec.same_output:
        a, b = spec.same_output
        r[f"{a}_output_equals_{b}"] = bool(
            np.allclose(_output(outs[a]), _output(outs[b]), atol=1e-5)
        )
    n = reps.call_inner
    samples = interleaved(
        {k: functools.partial(timed_inner, ready[k], n) for k in impls},
        reps.call_samples,
    )
    r["call_us"], r["call_cpu_us"] = med_wc(samples, 1e6)
    lap("call")

    if spec.nnx_jit:
        jitted = {k: p.nnx_jit(k, mode) for k in impls}
        for f in jitted.values():
            for _ in range(3):
                block(f())
        samples = interleaved(
            {k: functools.partial(timed_inner, f, n) for k, f in jitted.items()},
            reps.call_samples,
        )
        r["nnxjit_us"], r["nnxjit_cpu_us"] = med_wc(samples, 1e6)
        lap("nnx.jit")

    eager = {k: p.eager(k, mode) for k in impls}
    floor = getattr(p, "floor_eager", lambda mode: None)(mode)
    if floor is not None:
        eager["linen_floor"] = floor
    for f in eager.values():
        for _ in range(p.case.eager_warmup):
            block(f())
    samples = interleaved(
        {k: functools.partial(timed, f) for k, f in eager.items()}, reps.eager
    )
    r["eager_ms"], r["eager_cpu_ms"] = med_wc(samples, 1e3)
    if floor is not None:
        r["floor_eager_ms"], r["floor_eager_cpu_ms"] = (
            d.pop("linen_floor") for d in (r["eager_ms"], r["eager_cpu_ms"])
        )
    lap("eager")
    return r


def profile_eager(prepared: dict[str, Any], n: int, spec: Spec) -> dict[str, Any]:
    """cProfile ``n`` eager calls of ``spec.profile_impls`` per (case, mode): Python
    calls and ms per call, nnxgen's runtime entries (and ``profile_extra``'s) by
    cumulative time, the top of all entries by own time."""
    where = source_locator(rt.__file__, spec.profile_extra)
    report: dict[str, Any] = {}
    for name, p in prepared.items():
        with p.case.context():
            for mode in p.case.modes:
                entry = {}
                for impl in spec.profile_impls:
                    st, wall = profile_calls(p.eager(impl, mode), n)
                    rows = []
                    for (file, line, fname), (_, nc, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
                        w = where(file)
                        if w is not None:
                            rows.append(
                                {
                                    "func": f"{w}:{line}({fname})",
                                    "ncalls_per_apply": nc / n,
                                    "tottime_us_per_apply": tt / n * 1e6,
                                    "cumtime_us_per_apply": ct / n * 1e6,
                                }
                            )
                    rows.sort(key=lambda r: -r["cumtime_us_per_apply"])
                    entry[impl] = {
                        "calls_per_apply": st.total_calls / n,  # type: ignore[attr-defined]
                        "profiled_ms_per_apply": wall * 1e3,
                        "runtime_entries": rows[: spec.profile_rows],
                        "top_tottime_text": stats_text(st, 12),
                    }
                report[f"{name}/{mode}"] = entry
    return report
