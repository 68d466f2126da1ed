"""How fast ``nnxgen wrap`` / ``nnxgen check`` generate wrappers, per class.

The package of ``gen_models.py`` (10, 50 and 100 classes) is written to a temp dir.
Then, in this process (jax/flax are imported once up front; that import is timed
separately, as is a whole ``nnxgen wrap`` subprocess):

* ``wrap``:  ``nnxgen wrap pkg.modN -o out.py`` through the click entry point. Every
  repetition is *cold* as a fresh CLI run would be: the module's file gets a new
  mtime and is dropped from ``sys.modules``, so it is re-imported and re-parsed;
* ``check``: ``nnxgen check out.py`` on the up-to-date file, cold the same way;
* ``check (warm)``: the same check right after, with the module imported and parsed.

Reported: median ms per run and per class, the fitted ``t = a + b*N`` (fixed cost
``a`` and marginal ms per class ``b``), whether growth is linear (the marginal cost
per class from 50 to 100 classes is within 1.5x of that from 10 to 50), and the
target: < 20 ms per class.
"""

from __future__ import annotations

import cProfile
import importlib
import io
import os
import pkgutil
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gen_models import SIZES, write_package
from wrapping import run_cli

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS_PER_CLASS = 20.0
#: Every module of nnxgen's generator (all of nnxgen but its runtime), whatever
#: its layout: what ``nnxgen wrap`` imports beyond jax and flax.
IMPORT_GENERATOR = (
    "import importlib, pkgutil, nnxgen; [importlib.import_module(m.name) for m in "
    "pkgutil.walk_packages(nnxgen.__path__, 'nnxgen.') if not m.name.startswith("
    "('nnxgen.runtime', 'nnxgen.templates', 'nnxgen.__main__'))]"
)


def import_generator() -> None:
    """Import jax, flax and every module of the generator in this process."""
    for name in ("jax", "flax.nnx", "flax.linen", "nnxgen"):
        importlib.import_module(name)
    nnxgen = sys.modules["nnxgen"]
    for m in pkgutil.walk_packages(nnxgen.__path__, "nnxgen."):
        if not m.name.startswith(
            ("nnxgen.runtime", "nnxgen.templates", "nnxgen.__main__")
        ):
            importlib.import_module(m.name)


def make_cold(modname: str, root: Path, bump: list[int]) -> None:
    """Next use re-imports and re-parses ``modname`` (new mtime, not in sys.modules)."""
    path = root / (modname.replace(".", "/") + ".py")
    bump[0] += 1
    t = time.time() + bump[0]
    os.utime(path, (t, t))
    sys.modules.pop(modname, None)
    importlib.invalidate_caches()


def time_import(code: str, reps: int) -> float:
    """Median seconds that ``code`` takes in a fresh interpreter."""

    def one(c: str) -> float:
        p = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import time; t=time.perf_counter(); {c}; print(time.perf_counter()-t)",
            ],
            capture_output=True,
            text=True,
            cwd=str(ROOT),
            check=True,
        )
        return float(p.stdout.strip().splitlines()[-1])

    return statistics.median(one(code) for _ in range(reps))


def fit(ns: list[int], ts: list[float]) -> tuple[float, float]:
    """Least-squares ``t = a + b*n``."""
    mn, mt = statistics.mean(ns), statistics.mean(ts)
    b = sum((n - mn) * (t - mt) for n, t in zip(ns, ts)) / sum(
        (n - mn) ** 2 for n in ns
    )
    return mt - b * mn, b


def _cli(args: list[str], what: str) -> float:
    dt, code, text = run_cli(args)
    if code:
        print(text)
        raise SystemExit(f"{what} failed (exit {code})")
    return dt


def run(quick: bool, reps: int, profile: bool) -> dict[str, Any]:
    """Every measurement of the generation benchmark, and its verdicts."""
    results: dict[str, Any] = {"reps": reps, "python": sys.version.split()[0]}
    # Import costs, each in a fresh interpreter (not part of the per-class figures).
    ireps = 1 if quick else 2
    results["import_s"] = {
        "nnxgen.cli": time_import("import nnxgen.cli", ireps),
        "jax+flax.nnx+flax.linen": time_import(
            "import jax, flax.nnx, flax.linen", ireps
        ),
        "nnxgen generator (+jax, flax, libcst, jinja2)": time_import(
            f"import flax.nnx, flax.linen, libcst, jinja2; {IMPORT_GENERATOR}", ireps
        ),
    }
    # Import everything once in this process so the timed runs exclude it.
    t0 = time.perf_counter()
    import_generator()
    results["in_process_import_s"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="nnxgen_genbench_") as tmp:
        root = Path(tmp)
        mods = write_package(root)
        sys.path.insert(0, tmp)
        outdir = root / "out"
        outdir.mkdir()
        bump = [0]
        # Warm-up: jinja2 template compilation, libcst grammar, first-use caches.
        make_cold(mods[SIZES[0]], root, bump)
        _cli(["wrap", mods[SIZES[0]], "-o", str(outdir / "warmup.py")], "warm-up wrap")

        per: dict[int, dict[str, list[float]]] = {
            n: {"wrap": [], "check": [], "check_warm": []} for n in SIZES
        }
        outputs = {n: outdir / f"mod{n}_linen.py" for n in SIZES}
        for r in range(reps):
            for n in list(SIZES) if r % 2 == 0 else list(reversed(SIZES)):
                make_cold(mods[n], root, bump)
                out = str(outputs[n])
                per[n]["wrap"].append(
                    _cli(["wrap", mods[n], "-o", out], f"nnxgen wrap {mods[n]}")
                )
                make_cold(mods[n], root, bump)
                per[n]["check"].append(_cli(["check", out], f"nnxgen check {out}"))
                per[n]["check_warm"].append(run_cli(["check", out])[0])

        if profile:
            make_cold(mods[100], root, bump)
            pr = cProfile.Profile()
            pr.enable()
            run_cli(["wrap", mods[100], "-o", str(outdir / "profiled.py")])
            pr.disable()
            buf = io.StringIO()
            pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(
                r"nnxgen/|inspect\.py", 25
            )
            results["profile_text"] = buf.getvalue()

        results["classes_generated"] = {
            n: outputs[n].read_text().count("\nclass ") for n in SIZES
        }
        results["lines_generated"] = {
            n: outputs[n].read_text().count("\n") for n in SIZES
        }
        # One whole CLI run in a subprocess (interpreter start + imports + generation).
        t0 = time.perf_counter()
        sp = subprocess.run(
            [sys.executable, "-m", "nnxgen", "wrap", mods[100], "-o",
             str(outdir / "sub_linen.py")],
            capture_output=True, text=True, cwd=tmp, check=False,
        )  # fmt: skip
        results["subprocess_wrap_100_s"] = time.perf_counter() - t0
        results["subprocess_wrap_ok"] = sp.returncode == 0

    rows = {}
    for n in SIZES:
        rows[n] = {k: statistics.median(v) * 1e3 for k, v in per[n].items()}
        rows[n]["samples_ms"] = {
            k: [round(x * 1e3, 1) for x in v] for k, v in per[n].items()
        }
    results["ms"] = rows
    results["verdicts"] = {cmd: verdict(rows, cmd) for cmd in per[SIZES[0]]}
    return results


def verdict(rows: dict[int, dict[str, Any]], cmd: str) -> dict[str, Any]:
    """Fit, marginal costs, linearity and the per-class target of one command."""
    a, b = fit(list(SIZES), [rows[n][cmd] for n in SIZES])
    m1 = (rows[50][cmd] - rows[10][cmd]) / 40
    m2 = (rows[100][cmd] - rows[50][cmd]) / 50
    worst = max(rows[n][cmd] / n for n in SIZES)
    return {
        "fixed_ms": a,
        "ms_per_class_fit": b,
        "marginal_10_50": m1,
        "marginal_50_100": m2,
        "linear": m1 > 0 and m2 <= 1.5 * m1,
        "target_pass": worst < TARGET_MS_PER_CLASS and b < TARGET_MS_PER_CLASS,
        "worst_ms_per_class": worst,
    }
