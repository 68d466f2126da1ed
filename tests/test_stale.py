"""A wrapper whose wrapped class changed fails at its first use with a clear error.

The error (:class:`nnxgen.runtime._stale.StaleWrapperError`) names the file, the
parameter that differs, the command from the file's header that regenerates it
and ``nnxgen check``; ``nnxgen check`` reports the file as stale.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from click.testing import CliRunner
from flax import nnx

from nnxgen import generate
from nnxgen.cli import main
from nnxgen.runtime import NnxgenError, _stale
from nnxgen.runtime._linen_wrapper import stale as linen_wrapper_stale
from nnxgen.runtime._nnx_wrapper import stale as nnx_wrapper_stale
from nnxgen.runtime._stale import StaleWrapperError

X = jnp.ones((1, 3))

NNX_V1 = '''
import jax
from flax import nnx


class Net(nnx.Module):
    """A linear layer with a scale."""

    def __init__(self, din: int, dout: int = 2, *, scale: float = 1.0, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.scale = scale

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x) * self.scale

    def embed(self, x: jax.Array, shift: float = 0.0) -> jax.Array:
        return self.linear(x) + shift
'''

LINEN_V1 = '''
import flax.linen as nn
import jax


class Block(nn.Module):
    """A dense layer with a scale."""

    features: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.features)(x) * self.scale
'''

_COUNT = iter(range(10**6))


class Project:
    """A throwaway package ``pkg`` with ``models.py`` and a generated wrapper file."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, source: str):
        self.root = root
        self.pkg = f"stalepkg{next(_COUNT)}"
        self.out = f"{self.pkg}/models_wrapped.py"
        self.mp = monkeypatch
        (root / self.pkg).mkdir()
        (root / self.pkg / "__init__.py").write_text("")
        monkeypatch.chdir(root)
        monkeypatch.syspath_prepend(str(root))
        self.write(source)
        (root / "pyproject.toml").write_text(
            f'[tool.nnxgen.outputs]\n"{self.out}" = ["{self.pkg}.models"]\n'
        )

    @property
    def command(self) -> str:
        return f"nnxgen wrap {self.pkg}.models -o {self.out}"

    def write(self, source: str) -> None:
        (self.root / self.pkg / "models.py").write_text(textwrap.dedent(source))
        shutil.rmtree(self.root / self.pkg / "__pycache__", ignore_errors=True)
        self._forget()

    def edit(self, old: str, new: str) -> None:
        path = self.root / self.pkg / "models.py"
        text = path.read_text()
        assert old in text, old
        self.write(text.replace(old, new))

    def generate(self) -> None:
        self._forget()
        text = generate.generate([f"{self.pkg}.models"], self.out)
        (self.root / self.out).write_text(text)

    def load(self):
        """The wrapper module, imported afresh with the current ``models.py``."""
        self._forget()
        return importlib.import_module(f"{self.pkg}.models_wrapped")

    def _forget(self) -> None:
        for name in [m for m in sys.modules if m.split(".")[0] == self.pkg]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def nnx_project(tmp_path, monkeypatch):
    p = Project(tmp_path, monkeypatch, NNX_V1)
    p.generate()
    return p


@pytest.fixture
def linen_project(tmp_path, monkeypatch):
    p = Project(tmp_path, monkeypatch, LINEN_V1)
    p.generate()
    return p


def _assert_stale(err: pytest.ExceptionInfo, project: Project, *expected: str) -> None:
    msg = str(err.value)
    assert isinstance(err.value, StaleWrapperError), msg
    assert isinstance(err.value, NnxgenError) and isinstance(err.value, TypeError)
    assert "models_wrapped.py is stale: it was generated from another version" in msg, (
        msg
    )
    assert f"Regenerate the file: {project.command} (from the project root)" in msg, msg
    assert "`nnxgen check` finds every stale generated file" in msg, msg
    for text in expected:
        assert text in msg, msg


# ---------------------------------------------------------------------------
# Linen wrappers of NNX modules.

#: (case, old text, new text, what the message must say)
NNX_EDITS = [
    ("ctor gains a required argument", "scale: float = 1.0, rngs", "scale: float = 1.0, depth: int, rngs",
     "__init__() has a new required parameter 'depth'"),
    ("ctor loses an argument", "*, scale: float = 1.0, rngs: nnx.Rngs):", "*, rngs: nnx.Rngs):\n        scale = 1.0",
     "__init__() no longer has the parameter 'scale'"),
    ("ctor default removed", "dout: int = 2", "dout: int",
     "__init__() parameter 'dout' is now required (it had a default)"),
    ("ctor no longer takes rngs", "*, scale: float = 1.0, rngs: nnx.Rngs):",
     "*, scale: float = 1.0):\n        rngs = nnx.Rngs(0)", "__init__() no longer takes 'rngs'"),
    ("method gains a required argument", "x: jax.Array, shift: float = 0.0", "x: jax.Array, y: jax.Array, shift: float = 0.0",
     "embed() has a new required parameter 'y'"),
    ("method loses an argument", "x: jax.Array, shift: float = 0.0) -> jax.Array:",
     "x: jax.Array) -> jax.Array:\n        shift = 0.0", "embed() no longer has the parameter 'shift'"),
    ("method argument becomes keyword-only", "x: jax.Array, shift: float = 0.0", "x: jax.Array, *, shift: float = 0.0",
     "embed() parameter 'shift' is now keyword-only (was positional-or-keyword)"),
    ("method arguments reordered", "embed(self, x: jax.Array, shift: float = 0.0)", "embed(self, shift: float, x: jax.Array)",
     "embed() parameter 'shift' is now required"),
    ("method takes rngs", "def __call__(self, x: jax.Array)", "def __call__(self, x: jax.Array, *, rngs: nnx.Rngs | None = None)",
     "__call__() now takes 'rngs'"),
    ("method removed", "    def embed(", "    def _embed(", "embed() no longer exists"),
]  # fmt: skip


@pytest.mark.parametrize(
    "old,new,expected", [c[1:] for c in NNX_EDITS], ids=[c[0] for c in NNX_EDITS]
)
def test_stale_nnx_wrapper_fails_at_init_naming_the_change(
    nnx_project, old, new, expected
):
    nnx_project.edit(old, new)
    mod = nnx_project.load()
    with pytest.raises(StaleWrapperError) as err:
        mod.Net(din=3).init(jax.random.key(0), X)
    _assert_stale(err, nnx_project, expected, f"{nnx_project.pkg}.models.Net")


def test_positional_order_is_compared(nnx_project):
    nnx_project.edit(
        "x: jax.Array, shift: float = 0.0", "x: jax.Array, y, shift: float = 0.0"
    )
    nnx_project.generate()
    nnx_project.edit("x: jax.Array, y, shift", "y, x: jax.Array, shift")
    mod = nnx_project.load()
    with pytest.raises(StaleWrapperError) as err:
        mod.Net(din=3).init(jax.random.key(0), X)
    _assert_stale(
        err, nnx_project, "embed() takes its positional parameters in another order"
    )


def test_stale_nnx_wrapper_fails_at_apply_and_under_jit(nnx_project):
    variables = nnx_project.load().Net(din=3).init(jax.random.key(0), X)
    nnx_project.edit("scale: float = 1.0, rngs", "scale: float = 1.0, depth: int, rngs")
    model = nnx_project.load().Net(din=3)
    expected = "__init__() has a new required parameter 'depth'"
    with pytest.raises(StaleWrapperError) as err:
        model.apply(variables, X)
    _assert_stale(err, nnx_project, expected)
    with pytest.raises(StaleWrapperError) as err:
        model.apply(variables, X, method="embed")
    _assert_stale(err, nnx_project, expected)
    with pytest.raises(StaleWrapperError) as err:
        jax.jit(model.apply)(variables, X)
    _assert_stale(err, nnx_project, expected)
    with pytest.raises(StaleWrapperError) as err:
        jax.jit(model.init)(jax.random.key(0), X)
    _assert_stale(err, nnx_project, expected)


def test_a_method_change_fails_under_jit_too(nnx_project):
    variables = nnx_project.load().Net(din=3).init(jax.random.key(0), X)
    nnx_project.edit(
        "x: jax.Array, shift: float = 0.0",
        "x: jax.Array, y: jax.Array, shift: float = 0.0",
    )
    model = nnx_project.load().Net(din=3)
    with pytest.raises(StaleWrapperError) as err:
        jax.jit(model.apply)(variables, X)  # __call__ unchanged: the class is stale
    _assert_stale(err, nnx_project, "embed() has a new required parameter 'y'")


def test_fresh_wrapper_is_checked_once(nnx_project, monkeypatch):
    model = nnx_project.load().Net(din=3)
    cls = type(model)
    assert cls not in _stale.FRESH
    variables = model.init(jax.random.key(0), X)
    assert cls in _stale.FRESH

    def boom(*a, **k):
        raise AssertionError("checked twice")

    monkeypatch.setattr(linen_wrapper_stale, "nnx_differences", boom)
    monkeypatch.setattr(_stale, "error", boom)
    y = model.apply(variables, X)
    assert y.shape == (1, 2)
    assert jax.jit(model.apply)(variables, X).shape == (1, 2)


def test_optional_changes_that_keep_the_signature_are_not_stale(nnx_project):
    # annotations and default values are not compared (nnxgen check still sees them)
    nnx_project.edit("dout: int = 2", "dout: 'int' = 5")
    model = nnx_project.load().Net(din=3)
    assert model.init(jax.random.key(0), X)["params"]["linear"]["kernel"].shape == (
        3,
        2,
    )


def test_a_file_without_the_nnxgen_header_is_not_judged(nnx_project):
    path = nnx_project.root / nnx_project.out
    path.write_text(
        path.read_text().replace("# @generated by nnxgen", "# edited by hand")
    )
    nnx_project.edit("scale: float = 1.0, rngs", "scale: float = 1.0, depth: int, rngs")
    model = nnx_project.load().Net(din=3)
    with pytest.raises(TypeError) as err:
        model.init(jax.random.key(0), X)
    assert not isinstance(err.value, StaleWrapperError)
    assert "depth" in str(err.value)


# ---------------------------------------------------------------------------
# NNX wrappers of Linen modules.

#: (case, old text, new text, what the message must say)
LINEN_EDITS = [
    ("field added", "    scale: float = 1.0\n", "    scale: float = 1.0\n    bias: bool = True\n",
     "the Linen fields (__init__()) has a new parameter 'bias'"),
    ("field default removed", "scale: float = 1.0", "scale: float",
     "the Linen fields (__init__()) parameter 'scale' is now required"),
    ("method gains an argument", "def __call__(self, x: jax.Array)",
     "def __call__(self, x: jax.Array, y: jax.Array | None = None)", "__call__() has a new parameter 'y'"),
    ("method argument becomes required", "def __call__(self, x: jax.Array)",
     "def __call__(self, x: jax.Array, y: jax.Array)", "__call__() has a new required parameter 'y'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "old,new,expected", [c[1:] for c in LINEN_EDITS], ids=[c[0] for c in LINEN_EDITS]
)
def test_stale_linen_wrapper_fails_at_construction(linen_project, old, new, expected):
    linen_project.edit(old, new)
    mod = linen_project.load()
    with pytest.raises(StaleWrapperError) as err:
        mod.Block(4, rngs=nnx.Rngs(0))
    _assert_stale(err, linen_project, expected, f"{linen_project.pkg}.models.Block")
    with pytest.raises(StaleWrapperError) as err:
        jax.jit(lambda x: mod.Block(4, rngs=nnx.Rngs(0))(x))(X)
    _assert_stale(err, linen_project, expected)


#: Changes the generated ``Block(features=..., scale=...)`` call would fail on with a
#: plain TypeError: (case, [(old text, new text), ...], what the message must say).
LINEN_FIELD_EDITS = [
    ("required field added", [("    features: int\n", "    features: int\n    depth: int\n")],
     ["the Linen fields (__init__()) has a new required parameter 'depth'"]),
    ("field removed", [("scale: float = 1.0", "scale = 1.0  # no longer a field")],
     ["the Linen fields (__init__()) no longer has the parameter 'scale'"]),
    ("required field removed", [("features: int", "features = 4  # no longer a field")],
     ["the Linen fields (__init__()) no longer has the parameter 'features'"]),
    ("field renamed", [("features: int", "width: int"), ("self.features", "self.width")],
     ["the Linen fields (__init__()) has a new required parameter 'width'",
      "the Linen fields (__init__()) no longer has the parameter 'features'"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "edits,expected",
    [c[1:] for c in LINEN_FIELD_EDITS],
    ids=[c[0] for c in LINEN_FIELD_EDITS],
)
def test_a_field_change_is_a_stale_error_not_the_constructors_type_error(
    linen_project, edits, expected
):
    # The generated __init__ checks before it builds the Linen module, whose
    # dataclass constructor would raise a bare TypeError for these changes.
    assert (
        "_rt.linen_check_fresh(self, _LinenBlock)"
        in (linen_project.root / linen_project.out).read_text()
    )
    for old, new in edits:
        linen_project.edit(old, new)
    mod = linen_project.load()
    with pytest.raises(StaleWrapperError) as err:
        mod.Block(4, rngs=nnx.Rngs(0))
    _assert_stale(err, linen_project, *expected, f"{linen_project.pkg}.models.Block")
    assert "keyword argument" not in str(err.value)  # not the constructor's message
    with pytest.raises(StaleWrapperError) as err:  # the class is not marked fresh
        mod.Block(4, rngs=nnx.Rngs(0))
    _assert_stale(err, linen_project, *expected)


def _as_the_previous_version_wrote_it(project: Project) -> None:
    """The generated file without the ``linen_check_fresh`` line (nnxgen 0.1.0's
    ``__init__``: ``_rt.linen_init(self, _LinenBlock(...), rngs)`` only)."""
    path = project.root / project.out
    text = path.read_text()
    line = "        _rt.linen_check_fresh(self, _LinenBlock)\n"
    assert text.count(line) == 1, text
    path.write_text(text.replace(line, ""))


def test_a_file_from_the_previous_version_still_works(linen_project):
    _as_the_previous_version_wrote_it(linen_project)
    mod = linen_project.load()
    model = mod.Block(4, rngs=nnx.Rngs(0))
    assert type(model) in _stale.FRESH
    assert model(X).shape == (1, 4)
    assert mod.Block(4, scale=2.0, rngs=nnx.Rngs(0))(X).shape == (1, 4)


def test_a_file_from_the_previous_version_is_still_checked(linen_project):
    _as_the_previous_version_wrote_it(linen_project)
    linen_project.edit(
        "    scale: float = 1.0\n", "    scale: float = 1.0\n    bias: bool = True\n"
    )
    mod = linen_project.load()
    with pytest.raises(StaleWrapperError) as err:  # by linen_init, as before
        mod.Block(4, rngs=nnx.Rngs(0))
    _assert_stale(
        err, linen_project, "the Linen fields (__init__()) has a new parameter 'bias'"
    )


def test_fresh_linen_wrapper_is_checked_once(linen_project, monkeypatch):
    mod = linen_project.load()
    model = mod.Block(4, rngs=nnx.Rngs(0))
    assert type(model) in _stale.FRESH

    def boom(*a, **k):
        raise AssertionError("checked twice")

    monkeypatch.setattr(nnx_wrapper_stale, "linen_differences", boom)
    monkeypatch.setattr(_stale, "error", boom)
    assert mod.Block(4, rngs=nnx.Rngs(1))(X).shape == (1, 4)
    assert model(X).shape == (1, 4)


def test_stale_linen_wrapper_fails_at_call(linen_project, monkeypatch):
    linen_project.edit(
        "def __call__(self, x: jax.Array)",
        "def __call__(self, x: jax.Array, y: jax.Array)",
    )
    mod = linen_project.load()
    monkeypatch.setitem(_stale.FRESH, mod.Block, None)  # past linen_init's check
    model = mod.Block(4, rngs=nnx.Rngs(0))
    del _stale.FRESH[mod.Block]
    with pytest.raises(StaleWrapperError) as err:
        model(X)
    _assert_stale(err, linen_project, "__call__() has a new required parameter 'y'")


def test_fresh_linen_wrapper_runs(linen_project):
    model = linen_project.load().Block(4, rngs=nnx.Rngs(0))
    assert model(X).shape == (1, 4)
    assert type(model) in _stale.FRESH


# ---------------------------------------------------------------------------
# nnxgen check.


@pytest.mark.parametrize("files", [(), ("FILE",)], ids=["configured", "given"])
def test_check_reports_a_stale_wrapper(nnx_project, files):
    files = tuple(nnx_project.out if f == "FILE" else f for f in files)
    res = CliRunner().invoke(main, ["check", *files])
    assert res.exit_code == 0, res.output
    nnx_project.edit("scale: float = 1.0, rngs", "scale: float = 1.0, depth: int, rngs")
    res = CliRunner().invoke(main, ["check", *files])
    assert res.exit_code == 1, res.output
    assert f"{nnx_project.out} is stale; run: {nnx_project.command}" in res.stdout
    assert "+    depth: int" in res.stdout  # the diff shows the new field
    assert "1 of 1 generated file(s) out of date" in res.stderr


def test_check_reports_a_stale_linen_wrapper(linen_project):
    linen_project.edit("scale: float = 1.0", "scale: float")
    res = CliRunner().invoke(main, ["check"])
    assert res.exit_code == 1, res.output
    assert f"{linen_project.out} is stale; run: {linen_project.command}" in res.stdout
