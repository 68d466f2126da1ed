"""The benchmark's output: the timing tables, the target verdicts, memory and profile.

Every ratio is nnxgen (or the bridge) divided by pure NNX measured in the same run;
an implementation that cannot run a case shows ``—`` (the reason is printed under
the bridge's targets and kept in the JSON as ``missing``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cases import IMPLS
from harness import MEM_BATCH, MEM_DEPTH, MEM_WIDTH

TARGETS = {
    "hlo": "HLO op count ratio <= 1.00 (train and eval; no op beyond pure NNX's)",
    "trace": "trace+lower <= 1.10x pure NNX",
    "eager": "eager apply <= 1.3x pure NNX",
    "init": "init <= 1.1x pure NNX construction (repeated init; first init in detail)",
}
TRACE_LIMIT, EAGER_LIMIT, INIT_LIMIT = 1.10, 1.3, 1.1
MISSING = "—"

# ---------------------------------------------------------------------------
# Tables.


def _ratio(d: dict[str, float], impl: str) -> float:
    base = d["nnx"]
    return d[impl] / base if base else float("nan")


def _cell(d: dict[str, float] | None, impl: str, fmt: str) -> str:
    if d is None:
        return "-"
    if impl not in d:
        return MISSING
    v = d[impl]
    if impl == "nnx":
        return f"{v:{fmt}}"
    return f"{v:{fmt}} {_ratio(d, impl):5.2f}x"


def _column(res: dict[str, Any], r: dict[str, Any], mode: str, key: str) -> Any:
    """A table cell's timings: init is per case (shown on the first mode's row,
    eval for a forward pass), the rest per mode."""
    if key.startswith("init"):
        return res[key] if mode == next(iter(res["modes"])) else None
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
        if impl not in d:
            return MISSING
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
        if impl in res.get("missing", {}):
            continue
        cpu, wall = _pair(res, "init_ms", impl)
        first = res["init_first_cpu_ms"]
        fwd_mode = res.get("init_forward_mode", "eval")
        if fwd_mode is not None:
            # The first init of a model in a process runs one eager forward pass
            # (as Linen's init does); what is left once it (its cost taken as pure
            # NNX's eager apply) is taken out is the wrapper's own overhead.
            fwd = res["modes"][fwd_mode]["eager_cpu_ms"]["nnx"]
            rest = (first[impl] - fwd) / first["nnx"]
            fwd_detail = f"minus one eager forward {rest:.2f}x"
        else:  # the init method (init_cache) is what pure NNX runs too
            fwd_detail = "no forward pass (init method)"
        rows.append(
            {
                "target": "init",
                "case": name,
                "mode": "-",
                "value": cpu,
                "wall": wall,
                "pass": cpu <= INIT_LIMIT,
                "detail": (
                    f"first init {first[impl] / first['nnx']:.2f}x, {fwd_detail}"
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
        for name, res in results["cases"].items():
            why = res.get("missing", {}).get(impl)
            if why:
                print(f"    {MISSING}     {name:<12} not run: {why}")
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
            f"   {'nnxgen runtime entry':<44} {'calls':>6} {'tottime us':>11} {'cumtime us':>11}"
        )
        for r in w["runtime_entries"]:
            print(
                f"   {r['func']:<44} {r['ncalls_per_apply']:>6.1f} {r['tottime_us_per_apply']:>11.1f} "
                f"{r['cumtime_us_per_apply']:>11.1f}"
            )
    print()
