"""Generated files are clean under the ruff configuration of the project they are
written into, whatever the working directory of nnxgen or of ruff; and the layout
edges (a return annotation, a parameter annotation or a field default that alone
overflows the line, a long ``rngs_methods`` tuple) are clean under ruff's defaults,
in both directions.

nnxgen lays its output out with ruff itself (nnxgen/formatting.py): these tests run
the project's ``ruff format --check`` / ``ruff check`` on the files, from the project
and from elsewhere, and ``nnxgen check`` from elsewhere.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path

import pytest

from nnxgen import generate
from tests.helpers import ruff, run_cli

PYPROJECT = """\
[project]
name = "userproj"
version = "0"

[tool.ruff]
line-length = 120
indent-width = 2

[tool.ruff.format]
quote-style = "single"

[tool.ruff.lint]
extend-select = ["I", "UP", "C4", "B", "RUF100"]

[tool.ruff.lint.isort]
known-first-party = ["ucfg_consts"]
"""

# Outside the project (ruff cannot see it as first-party by its `src`): only
# `known-first-party` makes it first-party.
CONSTS = '''\
"""Constants of the user's own library."""

HIDDEN_WIDTH = 48
'''

MODELS = '''\
"""A user's NNX models."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx
from ucfg_consts import HIDDEN_WIDTH


class ProjectionHead(nnx.Module):
    """A head whose signature fits 120 columns but not 88."""

    def __init__(self, din: int, dout: int, hidden: int = HIDDEN_WIDTH, dropout_rate: float = 0.1, *, rngs: nnx.Rngs):
        self.lin = nnx.Linear(din, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, dout, rngs=rngs)
        self.drop = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, scale: Optional[float] = None, extra: dict = dict()) -> jax.Array:
        y = self.out(self.drop(nnx.relu(self.lin(x))))
        return y if scale is None else y * scale

    def features(self, x: jax.Array, normalize: bool = False, epsilon: float = 1e-6) -> dict[str, jax.Array]:
        """Hidden features.

        Indented docstring lines follow the project's indent width."""
        h = self.lin(x)
        return {"hidden": h / (jnp.linalg.norm(h) + epsilon) if normalize else h}
'''


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture(scope="module")
def userproj(tmp_path_factory):
    """proj/ (pyproject with [tool.ruff]) holding ucfg_models/ and the generated
    file; lib/ (outside the project) holding the first-party ucfg_consts; elsewhere/."""
    base = tmp_path_factory.mktemp("ucfg")
    proj, lib, elsewhere = base / "proj", base / "lib", base / "elsewhere"
    _write(proj / "pyproject.toml", PYPROJECT)
    _write(proj / "ucfg_models" / "__init__.py", "")
    _write(proj / "ucfg_models" / "models.py", MODELS)
    _write(lib / "ucfg_consts.py", CONSTS)
    elsewhere.mkdir()
    sys.path[:0] = [str(proj), str(lib)]
    old = Path.cwd()
    out = proj / "ucfg_models" / "models_linen.py"
    try:
        os.chdir(elsewhere)  # not the project: the output's own configuration applies
        text = generate.generate(["ucfg_models.models"], str(out))
        os.chdir(proj)
        from_root = generate.generate(
            ["ucfg_models.models"], "ucfg_models/models_linen.py"
        )
    finally:
        os.chdir(old)
    out.write_text(text)
    importlib.invalidate_caches()
    yield proj, lib, elsewhere, out, text, from_root
    sys.path.remove(str(proj))
    sys.path.remove(str(lib))
    for name in [
        m for m in sys.modules if m.startswith(("ucfg_models", "ucfg_consts"))
    ]:
        del sys.modules[name]


def _clean(path: Path, cwd: Path, *extra: str) -> None:
    lint = ruff("check", "--no-cache", *extra, str(path), cwd=cwd)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = ruff("format", "--check", "--no-cache", *extra, str(path), cwd=cwd)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_clean_under_the_project_config_from_the_project(userproj):
    proj, _, _, out, _, _ = userproj
    _clean(out.relative_to(proj), proj)
    _clean(Path("models_linen.py"), out.parent)  # from the package directory too


def test_clean_under_the_project_config_from_elsewhere(userproj):
    _, _, elsewhere, out, _, _ = userproj
    _clean(out, elsewhere)
    _clean(out, Path("/"))


def test_output_does_not_depend_on_the_working_directory(userproj):
    _, _, _, out, text, from_root = userproj
    # the same bytes but the recorded command (it names the output as given)
    assert from_root.replace("ucfg_models/models_linen.py", str(out)) == text


def test_layout_follows_the_project_config(userproj):
    text = userproj[4]
    lines = text.splitlines()
    # line-length 120: lines between 88 and 120 columns are not split
    assert (
        "  __nnxgen__ = _rt.WrapperSpec(_NnxProjectionHead, ('din', 'dout', 'hidden', 'dropout_rate'))\n"
        in text
    )
    assert (
        "    self, x: jax.Array, normalize: bool = False, epsilon: float = 1e-6, *, train: bool | None = None\n"
        in text
    )
    assert max(len(line) for line in lines if not line.startswith("#")) <= 120
    # quote-style single, indent-width 2 (docstring bodies re-indented too)
    assert "  def __call__(" in text and "    def __call__(" not in text
    assert "return _rt.call(self, '__call__'," in text
    assert "\n    Indented docstring lines follow the project's indent width." in text
    # isort: ucfg_consts (known-first-party) in the first-party section, after a blank line
    imports = text[text.index("from __future__") : text.index("_rt.check_version")]
    assert (
        "import nnxgen.runtime as _rt\n\nfrom ucfg_consts import HIDDEN_WIDTH\n"
        in imports
    ), imports
    # exactly the codes the project's rules report on the copied spellings (its
    # RUF100 would flag any other)
    assert "\n# ruff: noqa: C408, UP045\n" in text


def test_the_wrapper_runs(userproj):
    import jax
    import jax.numpy as jnp

    mod = importlib.import_module("ucfg_models.models_linen")
    head = mod.ProjectionHead(din=3, dout=2)
    x = jnp.ones((1, 3))
    variables = head.init(jax.random.key(0), x)
    assert head.apply(variables, x, train=False).shape == (1, 2)


def test_nnxgen_check_from_elsewhere_uses_the_project_config(userproj):
    proj, lib, elsewhere, out, _, _ = userproj
    env = {"PYTHONPATH": os.pathsep.join([str(proj), str(lib)])}
    res = run_cli("check", str(out), cwd=elsewhere, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 generated file(s) up to date" in res.stdout


def test_nnxgen_check_of_a_file_written_with_a_relative_output(userproj):
    """A header recording `-o ucfg_models/models_linen.py` (wrap run in proj/):
    `nnxgen check ../proj/ucfg_models/models_linen.py` from elsewhere formats with
    the file's own project config, not the config seen from the working directory."""
    proj, lib, elsewhere, out, text, from_root = userproj
    assert "-o ucfg_models/models_linen.py" in from_root
    env = {"PYTHONPATH": os.pathsep.join([str(proj), str(lib)])}
    try:
        out.write_text(from_root)
        rel = os.path.relpath(out, elsewhere)
        res = run_cli("check", rel, cwd=elsewhere, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        out.write_text(text)


def test_another_config_gives_another_file(userproj, tmp_path):
    """The output's own project decides: under an 88-column double-quote project
    the same targets give that project's layout (and `nnxgen check` there compares
    with it)."""
    text = userproj[4]
    _write(tmp_path / "pyproject.toml", "[tool.ruff]\nline-length = 88\n")
    out = tmp_path / "models_linen.py"
    other = generate.generate(["ucfg_models.models"], str(out))
    assert other != text.replace(str(userproj[3]), str(out))
    assert 'return _rt.call(self, "__call__",' in other
    out.write_text(other)
    _clean(out, userproj[2])


# ---------------------------------------------------------------------------
# Layout edges, under ruff's defaults.

EDGES = '''\
"""NNX modules whose wrappers hit ruff's layout edges."""

from __future__ import annotations

import enum

import jax
from flax import nnx


class Mode(enum.Enum):
    A_LONG_MEMBER_NAME_THAT_OVERFLOWS_THE_LINE_ONLY_WHEN_IT_IS_A_FIELD_DEFAULT = 1
    SHORT = 2


class LongReturn(nnx.Module):
    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.lin = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(
        self, x: jax.Array
    ) -> tuple[dict[str, jax.Array], dict[str, jax.Array], dict[str, jax.Array], dict[str, jax.Array]]:
        y = self.lin(x)
        return {"a": y}, {"b": y}, {"c": y}, {"d": y}

    def widen(
        self, x: dict[str, tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]]
    ) -> jax.Array:
        return self.lin(x["a"][0])


class LongDefault(nnx.Module):
    def __init__(
        self,
        dim: int,
        mode: Mode = Mode.A_LONG_MEMBER_NAME_THAT_OVERFLOWS_THE_LINE_ONLY_WHEN_IT_IS_A_FIELD_DEFAULT,
        table: dict[str, tuple[int, int, int, int, int, int, int, int, int, int, int, int, int]] | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        self.lin = nnx.Linear(dim, dim, rngs=rngs)
        self.mode = mode

    def __call__(
        self,
        x: jax.Array,
        mode: Mode = Mode.A_LONG_MEMBER_NAME_THAT_OVERFLOWS_THE_LINE_ONLY_WHEN_IT_IS_A_FIELD_DEFAULT,
    ) -> jax.Array:
        return self.lin(x)


class ManyRngsMethods(nnx.Module):
    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.lin = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array, *, rngs: nnx.Rngs) -> jax.Array:
        return self.lin(x) + jax.random.normal(rngs.noise(), x.shape)

    def sample_first_variant(self, x: jax.Array, *, rngs: nnx.Rngs) -> jax.Array:
        return x + jax.random.normal(rngs.noise(), x.shape)

    def sample_second_variant(self, x: jax.Array, *, rngs: nnx.Rngs) -> jax.Array:
        return x + jax.random.normal(rngs.noise(), x.shape)

    def sample_third_variant(self, x: jax.Array, *, rngs: nnx.Rngs) -> jax.Array:
        return x + jax.random.normal(rngs.noise(), x.shape)

    def sample_fourth_variant(self, x: jax.Array, *, rngs: nnx.Rngs) -> jax.Array:
        return x + jax.random.normal(rngs.noise(), x.shape)
'''

LINEN_EDGES = '''\
"""Linen modules whose NNX wrappers hit ruff's layout edges."""

from __future__ import annotations

import enum

import flax.linen as nn
import jax


class Mode(enum.Enum):
    A_LONG_MEMBER_NAME_THAT_OVERFLOWS_THE_LINE_ONLY_WHEN_IT_IS_A_FIELD_DEFAULT = 1
    SHORT = 2


class LinenEdges(nn.Module):
    features: int
    mode: Mode = Mode.A_LONG_MEMBER_NAME_THAT_OVERFLOWS_THE_LINE_ONLY_WHEN_IT_IS_A_FIELD_DEFAULT

    @nn.compact
    def __call__(
        self, x: jax.Array
    ) -> tuple[dict[str, jax.Array], dict[str, jax.Array], dict[str, jax.Array], dict[str, jax.Array]]:
        y = nn.Dense(self.features)(x)
        return {"a": y}, {"b": y}, {"c": y}, {"d": y}
'''


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    d = tmp_path_factory.mktemp("edges")
    # ruff's defaults; the file only fixes the project root, which decides what
    # is first-party (with no configuration at all, ruff's working directory does)
    _write(d / "ruff.toml", "")
    _write(d / "ucfg_edges.py", EDGES)
    _write(d / "ucfg_linen_edges.py", LINEN_EDGES)
    sys.path.insert(0, str(d))
    old = Path.cwd()
    os.chdir(d)
    try:
        for src, out in (
            ("ucfg_edges", "edges_linen.py"),
            ("ucfg_linen_edges", "edges_nnx.py"),
        ):
            text = generate.generate([src], out)
            assert generate.generate([src], out) == text
            (d / out).write_text(text)
    finally:
        os.chdir(old)
    importlib.invalidate_caches()
    yield d
    sys.path.remove(str(d))
    for name in ("ucfg_edges", "ucfg_linen_edges", "edges_linen", "edges_nnx"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("out", ["edges_linen.py", "edges_nnx.py"])
def test_layout_edges_are_clean_under_ruff_defaults(edges, out, tmp_path):
    _clean(edges / out, edges, "--isolated")
    _clean(edges / out, tmp_path)  # from elsewhere too (the empty ruff.toml: defaults)
    text = (edges / out).read_text()
    assert "fmt: off" not in text and "fmt: skip" not in text


def test_layout_edges_split_as_ruff_does(edges):
    text = (edges / "edges_linen.py").read_text()
    # a return annotation alone over the line: split inside its subscript
    assert ") -> tuple[\n        dict[str, jax.Array],\n" in text, text
    # a field default over the line: parenthesized
    assert "    mode: Mode = (\n        Mode.A_LONG_MEMBER_NAME" in text, text
    # five rngs-taking methods: one per line, with a trailing comma
    assert (
        textwrap.indent(
            "rngs_methods=(\n"
            '    "__call__",\n'
            '    "sample_first_variant",\n'
            '    "sample_second_variant",\n'
            '    "sample_third_variant",\n'
            '    "sample_fourth_variant",\n'
            "),\n",
            " " * 8,
        )
        in text
    ), text


def test_layout_edge_wrappers_run(edges):
    import jax
    import jax.numpy as jnp

    x = jnp.ones((1, 3))
    lin = importlib.import_module("edges_linen")
    m = lin.LongReturn(dim=3)
    variables = m.init(jax.random.key(0), x)
    assert len(m.apply(variables, x)) == 4
    d = lin.LongDefault(dim=3)
    assert d.mode.name.startswith("A_LONG")
    nnx_mod = importlib.import_module("edges_nnx")
    from flax import nnx

    w = nnx_mod.LinenEdges(features=2, rngs=nnx.Rngs(0))
    assert w(x)[0]["a"].shape == (1, 2)


def test_the_suite_runs_the_ruff_nnxgen_uses():
    """The tests' ruff (tests/helpers.py) is the one nnxgen formats with."""
    import subprocess

    from nnxgen.codegen import formatting

    used = subprocess.run(
        [formatting.ruff_bin(), "--version"], capture_output=True, text=True, check=True
    )
    assert ruff("--version").stdout == used.stdout
