"""Helpers for tests that run the nnxgen CLI and the linters as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_cli(*args: str, cwd: Path | str = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(cwd), str(ROOT), *filter(None, [full_env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "nnxgen", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[test]')"
    return found


def ruff(*args: str, cwd: Path | str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("ruff"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def pyright(
    *files: str | Path, cwd: Path | str = ROOT, extra_paths: tuple = ()
) -> subprocess.CompletedProcess:
    """pyright (basic mode) on ``files``, resolving imports from this venv and extra paths."""
    import json

    if Path(cwd) != ROOT:
        config = {"extraPaths": [str(ROOT), *map(str, extra_paths)], "typeCheckingMode": "basic"}
        (Path(cwd) / "pyrightconfig.json").write_text(json.dumps(config))
    env = dict(os.environ)
    return subprocess.run(
        [tool("pyright"), "--pythonpath", sys.executable, *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def same(a, b) -> bool:
    """``a is b`` or equal values of the same type (how defaults are compared)."""
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays: ambiguous truth value
        return False


def load_variables(module, variables):
    """Copy Linen ``variables`` (all collections) into a pure NNX ``module``."""
    import flax
    from flax import nnx

    merged: dict = {}

    def deep(dst, src):
        for k, v in src.items():
            if isinstance(v, dict):
                deep(dst.setdefault(k, {}), v)
            else:
                dst[k] = v

    for col in variables.values():
        deep(merged, flax.core.unfreeze(col))
    nnx.update(module, merged)
    return module
