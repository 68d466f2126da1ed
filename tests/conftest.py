"""Shared fixtures: generate wrappers once per session and import them."""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory) -> Path:
    """A directory on sys.path that generated test wrappers are written into."""
    d = tmp_path_factory.mktemp("generated")
    sys.path.insert(0, str(d))
    return d


_made: dict[tuple[str, ...], object] = {}


@pytest.fixture(scope="session")
def wrap(gen_dir):
    """wrap(*targets) -> the imported generated module (cached per target list)."""
    from nnxgen import generate

    def _wrap(*targets: str):
        key = tuple(targets)
        if key not in _made:
            name = "w_" + re.sub(r"\W", "_", "_".join(targets)).lower()
            if len(name) > 60:
                name = name[:40] + "_" + hashlib.sha1(name.encode()).hexdigest()[:10]
            path = gen_dir / f"{name}.py"
            path.write_text(generate.generate(list(targets), str(path)), encoding="utf-8")
            importlib.invalidate_caches()
            _made[key] = importlib.import_module(name)
        return _made[key]

    return _wrap
