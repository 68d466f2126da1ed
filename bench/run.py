"""The benchmarks' command line: ``bench/run.py {nnx-to-linen,linen-to-nnx,kauldron,generation}``.

Run from the repository root::

    .venv/bin/python bench/run.py nnx-to-linen            # full run (~3-4 min on 2 busy cores)
    .venv/bin/python bench/run.py nnx-to-linen --quick    # fewer repetitions, no memory section
    .venv/bin/python bench/run.py nnx-to-linen --json out.json --profile
    .venv/bin/python bench/run.py nnx-to-linen --models mlp_bn,cnn --no-memory
    .venv/bin/python bench/run.py linen-to-nnx [--quick] [--cases mlp,cnn] [--profile] [--json out.json]
    .venv/bin/python bench/run.py generation [--quick] [--reps N] [--profile] [--json out.json]
    PYTHONPATH=.:tests/fixtures .venv-kauldron-py3.12-kd1.4.4/bin/python \\
        bench/run.py kauldron [--quick] [--no-times] [--json out.json]

nnx-to-linen: the generated Linen wrappers against pure NNX and ``nnx.bridge.to_linen``
(cases ``cases_nnx_to_linen.py``, implementations ``impls_nnx_to_linen.py``, init
memory ``memory.py``); linen-to-nnx: the generated NNX wrappers against plain Linen
and ``nnx.bridge.ToNNX`` (``cases_linen_to_nnx.py``); both measured by
``measure.py`` (columns described there) with ``harness.py``'s tools, printed by
``report.py`` and judged by ``verdicts.py``. generation: ``generation.py``;
kauldron: ``kd_side_by_side.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _p in (str(ROOT), str(BENCH)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

# Each subcommand imports its modules when it runs (start-up cost, and what it
# measures): generation times the imports of jax, flax and nnxgen itself, and
# kauldron runs only in a venv with a full Kauldron install.


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_json(path: str | None, results: dict[str, Any], **kw: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=1, **kw))
        print(f"wrote {path}")


def nnx_to_linen(a: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    t_import = time.perf_counter()
    import measure
    import memory
    import report
    import verdicts
    from cases_nnx_to_linen import ALL_CASES, make_cases
    from harness import FULL, QUICK, env_info

    import_s = time.perf_counter() - t_import
    if a.mem_child:
        print(json.dumps(memory.mem_child(a.mem_child, a.tmpdir)))
        return 0
    t_start = time.perf_counter()
    reps = QUICK if a.quick else FULL
    spec = measure.NNX_TO_LINEN
    with tempfile.TemporaryDirectory(prefix="nnxgen_bench_") as tmpdir:
        wanted = selected(a.models, ALL_CASES, ap)
        cases = [c for c in make_cases(tmpdir) if c.name in wanted]
        env = env_info(a.quick, reps)
        results: dict[str, Any] = {
            "env": {**env, "import_jax_flax_nnxgen_s": import_s},
            "cases": {},
        }
        log(f"benchmarking {len(cases)} models ({'quick' if a.quick else 'full'}) ...")
        prepared = {}
        for case in cases:
            with case.context():
                t0 = time.perf_counter()
                prepared[case.name] = case.prepare()
                log(f"  {case.name}: setup {time.perf_counter() - t0:.1f}s")
                results["cases"][case.name] = measure.measure_case(
                    prepared[case.name], reps, log, spec
                )
        if a.memory if a.memory is not None else not a.quick:
            results["memory"] = memory.bench_memory(tmpdir, log)
        n_prof = 10 if a.quick else 30
        if a.profile:
            t0 = time.perf_counter()
            results["profile"] = measure.profile_eager(prepared, n_prof, spec)
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
    report.print_nnx_to_linen(results)
    verdicts.print_targets(results)
    verdicts.print_goals(results)
    if "memory" in results:
        report.print_memory(
            results["memory"], memory.MEM_DEPTH, memory.MEM_WIDTH, memory.MEM_BATCH
        )
    else:
        print(
            "Init memory: skipped (default with --quick; pass --memory to include it)\n"
        )
    if "profile" in results:
        report.print_nnx_to_linen_profile(results["profile"], n_prof)
    print(f"total {results['env']['total_s']:.0f}s")
    write_json(a.json, results, default=str)
    return 0


def linen_to_nnx(a: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    import measure
    import report
    import verdicts
    from cases_linen_to_nnx import ALL_CASES, make_cases
    from harness import FULL, QUICK, env_info

    t_start = time.perf_counter()
    # The full run repeats more than nnx-to-linen's (these cases are cheaper, the
    # wrapper-vs-ToNNX differences small).
    reps = QUICK if a.quick else dataclasses.replace(FULL, init=31, trace=15, eager=15)
    spec = measure.LINEN_TO_NNX
    wanted = selected(a.cases, ALL_CASES, ap)
    results: dict[str, Any] = {"env": env_info(a.quick, reps), "cases": {}}
    n_prof = 10 if a.quick else 30
    with tempfile.TemporaryDirectory(prefix="nnxgen_linen_bench_") as tmpdir:
        cases = [c for c in make_cases(tmpdir) if c.name in wanted]
        log(f"benchmarking {len(cases)} cases ({'quick' if a.quick else 'full'}) ...")
        prepared = {}
        for case in cases:
            with case.context():
                t0 = time.perf_counter()
                prepared[case.name] = case.prepare()
                log(f"  {case.name}: setup {time.perf_counter() - t0:.1f}s")
                results["cases"][case.name] = measure.measure_case(
                    prepared[case.name], reps, log, spec
                )
        if a.profile:
            results["profile"] = measure.profile_eager(prepared, n_prof, spec)
    results["env"]["total_s"] = time.perf_counter() - t_start

    e = results["env"]
    print(
        f"nnxgen Linen->NNX benchmark: jax {e['jax']}, flax {e['flax']}, "
        f"python {e['python']}, backend {e['backend']}, {e['cpus']} CPUs, "
        f"{'quick' if a.quick else 'full'} run (reps {e['reps']})\n"
    )
    report.print_linen_to_nnx(results)
    results["verdicts"] = verdicts.linen_to_nnx_verdicts(results)
    print("Verdicts:")
    for line in results["verdicts"]:
        print("  " + line)
    print()
    if "profile" in results:
        report.print_linen_to_nnx_profile(results["profile"], n_prof)
    print(f"total {results['env']['total_s']:.0f}s")
    write_json(a.json, results, default=str)
    return 0


def generation(a: argparse.Namespace) -> int:
    import generation as gen
    import report
    from gen_models import SIZES

    t_start = time.perf_counter()
    results = gen.run(a.quick, a.reps or (1 if a.quick else 3), a.profile)
    report.print_generation(results, SIZES, gen.TARGET_MS_PER_CLASS)
    results["total_s"] = time.perf_counter() - t_start
    print(f"total {results['total_s']:.0f}s")
    write_json(a.json, results)
    return 0


def kauldron(a: argparse.Namespace) -> int:
    import kd_side_by_side
    import report

    rep = kd_side_by_side.run(a.quick, times=not a.no_times)
    report.print_kauldron(rep)
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1, sort_keys=True))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--json", metavar="PATH", help="write all results as JSON")
        return p

    p = command("nnx-to-linen", "generated Linen wrappers vs pure NNX and to_linen")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (~1 minute)")
    p.add_argument(
        "--models",
        help="comma-separated subset of the cases (default: all): mlp8, mlp_bn, "
        "transformer, cnn, resnet_cfg, lm_cfg, scan, decode",
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
        help="cProfile the wrapper's eager apply and list nnxgen runtime hot spots",
    )
    p.add_argument("--_mem-child", dest="mem_child", help=argparse.SUPPRESS)
    p.add_argument("--_tmpdir", dest="tmpdir", help=argparse.SUPPRESS)

    p = command("linen-to-nnx", "generated NNX wrappers vs plain Linen and ToNNX")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (~30 s)")
    p.add_argument(
        "--cases",
        help="comma-separated subset of the cases (default: all): mlp, encoder, cnn, deep",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the eager calls of nnxgen and tonnx (converter hot spots)",
    )

    p = command("generation", "how fast nnxgen wrap / check generate, per class")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions per size (default 3, quick 1)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one cold wrap of the 100-class module; list the top entries",
    )

    p = command("kauldron", "nnxgen vs Kauldron's linen_from_nnx (full Kauldron venv)")
    p.add_argument("--quick", action="store_true", help="5 samples instead of 20")
    p.add_argument(
        "--no-times", action="store_true", help="behaviour only (the test suite)"
    )
    return ap


def selected(
    names: str | None, known: tuple[str, ...], ap: argparse.ArgumentParser
) -> list[str]:
    """The comma-separated case names asked for (all when none), checked."""
    wanted = names.split(",") if names else list(known)
    unknown = set(wanted) - set(known)
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    return wanted


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if a.command == "nnx-to-linen":
        return nnx_to_linen(a, ap)
    if a.command == "linen-to-nnx":
        return linen_to_nnx(a, ap)
    if a.command == "generation":
        return generation(a)
    return kauldron(a)


if __name__ == "__main__":
    sys.exit(main())
