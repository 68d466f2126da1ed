"""The benchmarks' printed output: timing tables, memory, profiles, generation, Kauldron.

Every ratio is an implementation divided by the direction's baseline measured in the
same run (NNX → Linen: pure NNX, fixed-width grids; Linen → NNX: plain Linen,
Markdown tables). An implementation that cannot run a case shows ``—``. The
pass/fail lines are ``verdicts.py``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

MISSING = "—"


def ratio(d: dict[str, float], impl: str, base: str) -> float:
    return d[impl] / d[base] if d[base] else float("nan")


def cpu_key(key: str) -> str:
    """The process-CPU-time twin of a wall-clock timing key."""
    return key.replace("_ms", "_cpu_ms").replace("_us", "_cpu_us")


def value(res: dict[str, Any], r: dict[str, Any], mode: str, key: str) -> Any:
    """A cell's timings: init is per case (shown on the case's first mode row),
    the rest per mode."""
    if key.startswith("init"):
        return res[key] if mode == next(iter(res["modes"])) else None
    return r[key]


# ---------------------------------------------------------------------------
# NNX → Linen.

N2L_IMPLS = ("nnx", "nnxgen", "bridge")


def _n2l_cell(d: dict[str, float] | None, impl: str, fmt: str) -> str:
    if d is None:
        return "-"
    if impl not in d:
        return MISSING
    if impl == "nnx":
        return f"{d[impl]:{fmt}}"
    return f"{d[impl]:{fmt}} {ratio(d, impl, 'nnx'):5.2f}x"


def _n2l_cpu_cell(d: dict[str, float] | None, impl: str) -> str:
    if d is None:
        return "-"
    if impl not in d:
        return MISSING
    if impl == "nnx":
        return f"[{d['nnx']:.3g}]"
    return f"{ratio(d, impl, 'nnx'):.2f}x"


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


def print_nnx_to_linen(results: dict[str, Any]) -> None:
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
                for impl in N2L_IMPLS:
                    cells = [
                        _n2l_cell(value(res, r, mode, k), impl, f) for _, k, f in cols
                    ]
                    yield res["label"], mode, impl, cells
            yield None

    _print_grid(22, [c[0] for c in cols], rows())

    # The same timings as process CPU time (less sensitive to other jobs on the CPUs).
    ccols = [(t.rsplit(" ", 1)[0], cpu_key(k)) for t, k, _ in cols if k != "hlo_ops"]

    def cpu_rows():
        for name, res in results["cases"].items():
            for mode, r in res["modes"].items():
                for impl in N2L_IMPLS:
                    cells = [
                        _n2l_cpu_cell(value(res, r, mode, k), impl) for _, k in ccols
                    ]
                    yield name, mode, impl, cells
        yield None

    print("Process-CPU-time ratios vs nnx (same medians; CPU ms of nnx in [])")
    _print_grid(14, [c[0] for c in ccols], cpu_rows())


def print_memory(mem: dict[str, Any], depth: int, width: int, batch: int) -> None:
    mib = 1 / 2**20

    def f(v):
        return "n/a" if v is None else f"{v * mib:8.1f}"

    print(
        f"Init memory: {depth}-layer MLP, width {width}, batch {batch} "
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
        sds = m["eval_shape_all_shapedtypestruct"]
        ok = "ShapeDtypeStruct" if sds else "NOT all SDS"
        print(
            f"{impl:<7} {f(m['param_bytes']):>8} {f(m['cold_peak_bytes']):>10} "
            f"{f(m['warm_peak_bytes']):>10} {f(m['retained_bytes']):>9} "
            f"{f(m['eval_shape_peak_bytes']):>16} {m['eval_shape_leaves']:>5} {ok}"
        )
    for impl, m in mem.items():
        if "error" in m:
            continue
        es, conc, sds = (
            m["eval_shape_peak_bytes"],
            m["warm_peak_bytes"],
            m["eval_shape_all_shapedtypestruct"],
        )
        if es is not None and conc:
            verdict = "PASS" if es < 0.05 * m["param_bytes"] and sds else "FAIL"
            print(
                f"  {verdict}  {impl}: eval_shape(init) allocates {es * mib:.1f} MiB "
                f"vs {conc * mib:.1f} MiB for a concrete init "
                f"({es / conc:.1%}); leaves are "
                f"{'all' if sds else 'NOT all'} ShapeDtypeStruct"
            )
    print()


def print_nnx_to_linen_profile(prof: dict[str, Any], n: int) -> None:
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


# ---------------------------------------------------------------------------
# Linen → NNX.

L2N_IMPLS = ("linen", "nnxgen", "tonnx")
#: (title, key, format) of the Linen → NNX columns; "ops" columns are integers.
L2N_COLUMNS = [
    ("init ms", "init_ms", ".2f"),
    ("trace+lower ms", "trace_ms", ".1f"),
    ("lowered ops", "lowered_ops", "d"),
    ("HLO ops", "hlo_ops", "d"),
    ("jit call us", "call_us", ".0f"),
    ("nnx.jit us", "nnxjit_us", ".0f"),
    ("eager ms", "eager_ms", ".3f"),
]
L2N_TIMINGS = [(t, k) for t, k, _ in L2N_COLUMNS if not k.endswith("_ops")]


def _md_table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def _l2n_rows(results: dict[str, Any], label: str, cells) -> list[list[str]]:
    rows = []
    for name, res in results["cases"].items():
        for mode, r in res["modes"].items():
            for impl in L2N_IMPLS:
                first = impl == L2N_IMPLS[0]
                title = res["label"] if label == "label" else name
                rows.append(
                    [title if first else "", mode if first else "", impl]
                    + cells(res, r, mode, impl)
                )
    return rows


def print_linen_to_nnx(results: dict[str, Any]) -> None:
    def wall(res, r, mode, impl):
        out = []
        for _, k, fmt in L2N_COLUMNS:
            d = value(res, r, mode, k)
            if d is None:
                out.append("")
            elif impl == "linen":
                out.append(f"{d[impl]:{fmt}}")
            else:
                out.append(f"{d[impl]:{fmt}} ({ratio(d, impl, 'linen'):.2f}x)")
        return out

    def cpu(res, r, mode, impl):
        out = []
        for _, k in L2N_TIMINGS:
            d = value(res, r, mode, cpu_key(k))
            if d is None:
                out.append("")
            elif impl == "linen":
                out.append(f"[{d['linen']:.3g}]")
            else:
                out.append(f"{d[impl] / d['linen']:.2f}x")
        return out

    print("Wall-clock medians; (r x) = ratio to linen in the same run.\n")
    head = ["case", "mode", "impl"]
    _md_table(head + [t for t, _, _ in L2N_COLUMNS], _l2n_rows(results, "label", wall))
    print("Process-CPU-time ratios to linen (linen's CPU ms / us in []).\n")
    _md_table(head + [t for t, _ in L2N_TIMINGS], _l2n_rows(results, "name", cpu))

    rows = []
    for name, res in results["cases"].items():
        for mode, r in res["modes"].items():
            cells = []
            for _, k in L2N_TIMINGS:
                d, c = value(res, r, mode, k), value(res, r, mode, cpu_key(k))
                if d is None:
                    cells.append("")
                else:
                    w = d["nnxgen"] / d["tonnx"]
                    cells.append(f"{c['nnxgen'] / c['tonnx']:.2f}x (wall {w:.2f}x)")
            rows.append([name, mode, "nnxgen/tonnx"] + cells)
    print("nnxgen / tonnx: process-CPU-time ratio (wall-clock ratio).\n")
    _md_table(["case", "mode", "ratio"] + [t for t, _ in L2N_TIMINGS], rows)


def print_linen_to_nnx_profile(prof: dict[str, Any], n: int) -> None:
    print(f"cProfile of eager calls ({n} calls each; per-call figures, us)\n")
    for key, d in prof.items():
        g, t = d["nnxgen"], d["tonnx"]
        print(
            f"== {key}: Python function calls per call: nnxgen {g['calls_per_apply']:.0f}, "
            f"tonnx {t['calls_per_apply']:.0f}"
        )
        for impl in ("nnxgen", "tonnx"):
            print(f"   {impl} converter / runtime entries by cumtime:")
            for e in d[impl]["runtime_entries"]:
                print(
                    f"     {e['func']:<58} {e['ncalls_per_apply']:>6.1f} calls "
                    f"{e['tottime_us_per_apply']:>8.1f} tot "
                    f"{e['cumtime_us_per_apply']:>9.1f} cum"
                )
    print()


# ---------------------------------------------------------------------------
# Generation; Kauldron.


def print_generation(
    results: dict[str, Any], sizes: tuple[int, ...], target: float
) -> None:
    rows, classes = results["ms"], results["classes_generated"]
    print(
        f"nnxgen generation speed ({results['reps']} cold repetitions per size, medians; "
        f"python {results['python']}, {os.cpu_count()} CPUs)"
    )
    print("Import time in a fresh interpreter (not in the figures below):")
    for k, v in results["import_s"].items():
        print(f"  {k:<46} {v * 1e3:8.0f} ms")
    print()
    head = (
        f"{'classes':>7} {'lines':>6} {'wrap ms':>9} {'ms/class':>9} {'check ms':>9} "
        f"{'ms/class':>9} {'check warm':>11} {'ms/class':>9}"
    )
    print(head)
    print("-" * len(head))
    for n in sizes:
        r = rows[n]
        print(
            f"{classes[n]:>7} {results['lines_generated'][n]:>6} {r['wrap']:>9.0f} "
            f"{r['wrap'] / n:>9.2f} {r['check']:>9.0f} {r['check'] / n:>9.2f} "
            f"{r['check_warm']:>11.0f} {r['check_warm'] / n:>9.2f}"
        )
    print()
    for cmd, v in results["verdicts"].items():
        print(
            f"{cmd:<11} fit t = {v['fixed_ms']:6.0f} ms + {v['ms_per_class_fit']:5.2f} ms x "
            f"classes; marginal ms/class 10->50: {v['marginal_10_50']:5.2f}, 50->100: "
            f"{v['marginal_50_100']:5.2f} -> {'linear' if v['linear'] else 'SUPERLINEAR'}; "
            f"{'PASS' if v['target_pass'] else 'FAIL'} < {target:.0f} ms/class "
            f"(worst {v['worst_ms_per_class']:.2f} ms/class)"
        )
    print()
    print(
        f"whole `python -m nnxgen wrap` of 100 classes in a subprocess: "
        f"{results['subprocess_wrap_100_s'] * 1e3:.0f} ms "
        f"({'ok' if results['subprocess_wrap_ok'] else 'FAILED'}; interpreter start + "
        "imports + generation)"
    )
    if "profile_text" in results:
        print(
            "\ncProfile of one cold `nnxgen wrap` of 100 classes (entries in nnxgen/ and "
            "inspect.py, by cumulative time):"
        )
        lines = results["profile_text"].splitlines()
        start = next(
            (i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0
        )
        stdlib = os.path.dirname(os.__file__) + "/"
        for ln in lines[start:]:
            if ln.strip():
                print("  " + ln.replace(str(ROOT) + "/", "").replace(stdlib, "")[:150])


def print_kauldron(report: dict[str, Any]) -> None:
    print(
        f"python {report['python']}  {report['versions']}  (median of {report['repeats']})"
    )
    for name, r in report["models"].items():
        print(f"\n{name}")
        for k, v in r["behaviour"].items():
            print(f"  {k:48s} nnxgen: {v['nnxgen']!s:40.40s} kd: {v['kd']!s}")
        print(f"  {'':14s} {'nnxgen/pure':>12s} {'kd/pure':>10s} {'nnxgen/kd':>10s}")
        for what, q in r.get("ratios", {}).items():
            print(
                f"  {what:14s} {q['nnxgen/pure']:12.2f} {q['kd/pure']:10.2f} "
                f"{q['nnxgen/kd']:10.2f}"
            )
    print(
        "\nkd jitted eval without rngs prints:",
        report["kd_jit_eval_without_rngs_prints"],
    )
