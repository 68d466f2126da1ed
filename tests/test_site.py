"""docs/ builds as a site in strict mode: a broken link or anchor fails (issue 24)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mkdocs_strict_build(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra")
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "index.html").exists()
    for page in ("runtime", "comparison", "scale", "testing", "generated-class"):
        assert (tmp_path / page / "index.html").exists(), page
