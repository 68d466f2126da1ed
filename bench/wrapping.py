"""Runs nnxgen's own command line in this process: the wrappers the benchmarks time.

Every wrapper a benchmark measures is written by ``nnxgen wrap`` (the public entry
point, as a user runs it) into a temp dir and imported from there.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import time
from pathlib import Path
from typing import Any

import click

from nnxgen.cli import main as nnxgen_main


def run_cli(args: list[str]) -> tuple[float, int, str]:
    """(seconds, exit code, output) of ``nnxgen ARGS`` run in this process."""
    out = io.StringIO()
    code = 0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            nnxgen_main.main(args=args, prog_name="nnxgen", standalone_mode=False)
        except SystemExit as e:
            code = int(e.code or 0)
        except click.ClickException as e:  # standalone_mode=False lets these through
            code = e.exit_code or 1
            print(f"nnxgen: error: {e.format_message()}")
    return time.perf_counter() - t0, code, out.getvalue()


def wrap(targets: list[str], out: Path) -> None:
    """``nnxgen wrap TARGETS -o OUT``, in this process; raises if it fails."""
    _, code, text = run_cli(["wrap", *targets, "-o", str(out)])
    if code:
        raise RuntimeError(f"nnxgen wrap {' '.join(targets)} failed:\n{text}")


def import_fresh(tmpdir: str, name: str) -> Any:
    """Import ``name`` from ``tmpdir`` (put first on ``sys.path``), caches refreshed."""
    if tmpdir not in sys.path:
        sys.path.insert(0, tmpdir)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def write_and_wrap(
    tmpdir: str, module: str, source: str, targets: list[str], suffix: str
) -> tuple[Any, Any]:
    """Write ``source`` as ``module`` into ``tmpdir``, wrap ``targets`` of it into
    ``module + suffix`` next to it; import and return both modules."""
    d = Path(tmpdir)
    (d / f"{module}.py").write_text(source)
    src = import_fresh(tmpdir, module)
    wrap([f"{module}:{t}" for t in targets], d / f"{module}{suffix}.py")
    return src, import_fresh(tmpdir, f"{module}{suffix}")
