"""The benchmarks' shared tools: timing, repetition counts, HLO op counts, profiles.

Everything here is direction-agnostic: wall and process-CPU time of a call,
interleaved repetitions (shared-CPU drift), medians, the opcode histogram of an
HLO text, cProfile of repeated calls and the run's environment.
"""

from __future__ import annotations

import collections
import cProfile
import dataclasses
import importlib
import io
import os
import platform
import pstats
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

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


def hist_diff(a: dict[str, int], b: dict[str, int]) -> str:
    """``op+n`` / ``op-n`` for every opcode whose count differs from ``a`` to ``b``."""
    diffs = [
        f"{op}{b.get(op, 0) - a.get(op, 0):+d}"
        for op in sorted(set(a) | set(b))
        if b.get(op, 0) != a.get(op, 0)
    ]
    return ", ".join(diffs)


# ---------------------------------------------------------------------------
# Timing.


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()`` including its device work."""
    c0, t0 = time.process_time(), time.perf_counter()
    block(fn())
    return time.perf_counter() - t0, time.process_time() - c0


def timed_inner(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``n`` back-to-back calls, blocking on the last."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        out = fn()
    block(out)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


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
    """Repetitions of each measurement (``call_inner``: calls per call sample)."""

    init: int
    trace: int
    compile: int
    call_samples: int
    call_inner: int
    eager: int


FULL = Reps(init=21, trace=9, compile=3, call_samples=21, call_inner=5, eager=9)
QUICK = Reps(init=7, trace=3, compile=1, call_samples=7, call_inner=3, eager=5)


def capped(reps: Reps, caps: dict[str, int]) -> Reps:
    """``reps`` with a case's caps on repetitions applied."""
    return dataclasses.replace(
        reps, **{k: min(getattr(reps, k), v) for k, v in caps.items()}
    )


# ---------------------------------------------------------------------------
# Profiles.


def profile_calls(fn: Callable[[], Any], n: int) -> tuple[pstats.Stats, float]:
    """cProfile ``n`` calls of ``fn`` (after one warm-up): (stats, wall s per call)."""
    block(fn())
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    for _ in range(n):
        block(fn())
    pr.disable()
    wall = (time.perf_counter() - t0) / n
    return pstats.Stats(pr), wall


def stats_text(st: pstats.Stats, *restrictions: Any, sort: str = "tottime") -> str:
    """``print_stats`` of ``st`` as text."""
    buf = io.StringIO()
    st.stream = buf  # type: ignore[attr-defined]
    st.sort_stats(sort).print_stats(*restrictions)
    return buf.getvalue()


def source_locator(
    module_file: str, extra: tuple[str, ...] = ()
) -> Callable[[str], str | None]:
    """A function naming a profiled file relative to ``module_file``'s package
    (``runtime/...``; a single-file module: its file name), or ``None`` for a file
    outside it; files whose path ends with one of ``extra`` are named as is."""
    path = os.path.abspath(module_file)
    if os.path.basename(path) == "__init__.py":  # a package: all its files
        pkg = os.path.dirname(path)
        prefix, name = pkg + os.sep, os.path.basename(pkg)
    else:
        prefix, name = None, os.path.basename(path)

    def where(f: str) -> str | None:
        a = os.path.abspath(f)
        if prefix is not None and a.startswith(prefix):
            return f"{name}/{os.path.relpath(a, prefix)}"
        if a == path:
            return name
        if extra and a.replace(os.sep, "/").endswith(extra):
            return Path(a).name
        return None

    return where


# ---------------------------------------------------------------------------
# The run's environment.


def env_info(quick: bool, reps: Reps | None = None) -> dict[str, Any]:
    """Versions, backend and CPU count of this run."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": importlib.import_module("flax").__version__,
        "nnxgen": getattr(importlib.import_module("nnxgen"), "__version__", "?"),
        "backend": jax.default_backend(),
        "cpus": os.cpu_count(),
        "quick": quick,
    }
    if reps is not None:
        env["reps"] = dataclasses.asdict(reps)
    return env
