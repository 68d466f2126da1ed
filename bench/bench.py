"""Benchmark nnxgen's generated Linen wrappers against pure NNX and ``nnx.bridge.to_linen``.

Run from the repository root::

    .venv/bin/python bench/bench.py                # full run (~3-4 minutes on 2 busy cores)
    .venv/bin/python bench/bench.py --quick        # fewer repetitions, no memory section
    .venv/bin/python bench/bench.py --json out.json --profile   # + cProfile of eager apply
    .venv/bin/python bench/bench.py --models mlp_bn,cnn --no-memory

Layout: ``cases.py`` is the table of cases (what each implementation constructs,
inits and applies), ``harness.py`` the timing / HLO counting / memory / profile,
``report.py`` the tables and target verdicts; this file is the command line.

For every case -- (a) an 8-layer Linear+relu MLP (width 256, its NNX class is
written to a temp dir and wrapped in-process with ``nnxgen.generate``), (b) the
BatchNorm+Dropout ``MLP`` block, (c) ``TransformerBlock`` and (d) ``CNN`` from
``generated_examples``, (e) ``ScannedStack`` (8 blocks of width 256 built with
``nnx.split_rngs`` + ``nnx.vmap``, run with ``nnx.scan``; dropout) and (f) one
cached decode step of ``CachedDecoder`` (width 256, 4 heads, cache of 32 steps for
a batch of 8; init is ``method='init_cache'``, the step ``mutable=['cache']``),
both from ``tests/fixtures/wildnnx/models.py`` and wrapped in-process, (g) a small
ResNet (BatchNorm) and (h) a small pre-norm LM stack, both configured as current NNX
model code is, by a config dataclass holding lists (frozen for (g), a plain dataclass
for (h): arguments Python cannot hash, keyed by content for the layout cache) and
written to the temp dir like (a) -- three implementations are compared (the bridge
cannot run (f): see ``cases.py``):

* ``nnx``:     pure NNX. ``graphdef, state = nnx.split(module)`` once (the module
               in ``.eval()`` / ``.train()``); the function is
               ``nnx.merge(graphdef, state)(x)``; in train mode it also returns the
               updated non-``Param`` state (batch stats and rng counters), the NNX
               analogue of ``mutable=['batch_stats']``. Decode step: the module
               after ``init_cache``; returns ``nnx.state(m, nnx.Cache)`` too.
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
import dataclasses
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

_T_IMPORT0 = time.perf_counter()
import jax

# The harness' pieces, importable from here as before the split.
from cases import (
    ALL_CASES,
    DEEP_MODULE,
    DEEP_SOURCE,
    IMPLS,
    Case,
    DecodeCase,
    ForwardCase,
    Impls,
    Prepared,
    make_cases,
    setup_deep_mlp,
    setup_wild,
)
from harness import (
    FULL,
    QUICK,
    Reps,
    bench_case,
    bench_memory,
    bench_mode,
    hlo_ops,
    interleaved,
    med,
    med_wc,
    mem_child,
    profile_eager,
)
from report import (
    EAGER_LIMIT,
    INIT_LIMIT,
    TARGETS,
    TRACE_LIMIT,
    check_targets,
    print_memory,
    print_profile,
    print_table,
    print_targets,
)

import nnxgen

IMPORT_S = time.perf_counter() - _T_IMPORT0

__all__ = [  # re-exported for scripts that imported them from bench.py
    "ALL_CASES",
    "DEEP_MODULE",
    "DEEP_SOURCE",
    "EAGER_LIMIT",
    "FULL",
    "IMPLS",
    "INIT_LIMIT",
    "QUICK",
    "TARGETS",
    "TRACE_LIMIT",
    "Case",
    "DecodeCase",
    "ForwardCase",
    "Impls",
    "Prepared",
    "Reps",
    "bench_case",
    "bench_memory",
    "bench_mode",
    "check_targets",
    "hlo_ops",
    "interleaved",
    "main",
    "make_cases",
    "med",
    "med_wc",
    "mem_child",
    "print_memory",
    "print_profile",
    "print_table",
    "print_targets",
    "profile_eager",
    "setup_deep_mlp",
    "setup_wild",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (~1 minute)")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument(
        "--models",
        default=",".join(ALL_CASES),
        help=f"comma-separated subset of: {','.join(ALL_CASES)}",
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
            impls[case.name] = case.prepare()
            log(f"  {case.name}: setup {time.perf_counter() - t0:.1f}s")
            results["cases"][case.name] = bench_case(impls[case.name], reps, log)
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
