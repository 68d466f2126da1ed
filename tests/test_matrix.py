"""The tested matrix (docs/testing.md) is what pyproject.toml declares and what this venv runs.

scripts/test.sh sets NNXGEN_STACK (floor / newest); run directly, the stack is
inferred the way the script infers it (the lowest allowed Python = the floor).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import sys

import pytest
import tomllib

from tests.helpers import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PACKAGES = ("jax", "jaxlib", "flax", "kauldron")


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def readme_matrix() -> dict[str, dict[str, str]]:
    """{stack: {"python", "jax", "jaxlib", "flax", "kauldron"}} from docs/testing.md's table."""
    rows = {}
    for line in (ROOT / "docs" / "testing.md").read_text().splitlines():
        m = re.fullmatch(
            r"\|\s*(floor|newest)\b[^|]*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*/\s*([\d.]+)\s*"
            r"\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|.*",
            line,
        )
        if m:
            rows[m[1]] = dict(zip(("python", *PACKAGES), m.groups()[1:]))
    return rows


def lower_bounds() -> dict[str, str]:
    reqs = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["kauldron"]
    out = {}
    for req in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([\d.]+)", req)
        assert m, f"{req!r} has no lower bound"
        out[m[1]] = m[2]
    out["jaxlib"] = out["jax"]
    out["python"] = re.fullmatch(r">=\s*([\d.]+)", PROJECT["requires-python"])[1]
    return out


def current_stack() -> str:
    stack = os.environ.get("NNXGEN_STACK")
    if stack:
        return stack
    floor_py = lower_bounds()["python"]
    return "floor" if "%d.%d" % sys.version_info[:2] == floor_py else "newest"


def test_readme_floor_row_is_the_declared_lower_bounds():
    rows = readme_matrix()
    assert set(rows) == {"floor", "newest"}, rows
    bounds = lower_bounds()
    assert rows["floor"] == {k: bounds[k] for k in ("python", *PACKAGES)}


def test_readme_newest_row_is_above_the_floor():
    rows = readme_matrix()
    for k in ("python", *PACKAGES):
        assert _version(rows["newest"][k]) >= _version(rows["floor"][k]), k
    assert _version(rows["newest"]["python"]) >= (3, 12)


def test_this_venv_runs_its_stack_of_the_readme_matrix():
    stack = current_stack()
    row = readme_matrix()[stack]
    have = {"python": "%d.%d" % sys.version_info[:2]}
    have |= {p: md.version(p) for p in PACKAGES}
    print(stack, have)
    if stack == "floor":
        assert have == row
    else:
        # unpinned: at least what the README lists (a newer release is tested too;
        # update the README's row when it lands)
        for k, v in row.items():
            assert _version(have[k]) >= _version(v), (k, have[k], v)


@pytest.mark.parametrize("name", ["libcst", "jinja2", "click", "ruff"])
def test_floor_pins_every_runtime_dependency(name):
    """On the floor stack every runtime dependency runs at its declared lower bound."""
    if current_stack() != "floor":
        assert _version(md.version(name)) >= _version(lower_bounds()[name])
        return
    assert _version(md.version(name)) == _version(lower_bounds()[name])
