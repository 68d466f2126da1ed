"""Idioms of third-party NNX and Linen code whose wrappers type checkers rejected
(issue 22, items 3-5): generic modules (``Generic[...]``, PEP 695), ParamSpec
``*args, **kwargs``, a method named like a builtin, ``-> NoReturn``, a bare
``Callable`` with a class default, a module with one unwrappable class, a Linen
docstring carrying a run-time repr, a Linen field ``f: X = None``. Both
directions; fixtures in ``tests/fixtures/idiompkg``.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from nnxgen import generate
from nnxgen.cli import main
from tests.helpers import ROOT, ruff, run_cli
from tests.typecheck import new_pyright_errors

FIXTURES = ROOT / "tests" / "fixtures"
PKG = FIXTURES / "idiompkg"
PEP695 = sys.version_info >= (3, 12)
#: idiompkg module -> generated file (NNX -> Linen, then Linen -> NNX)
MODULES = {
    "generic": "idioms_generic.py",
    "shadow": "idioms_shadow.py",
    "partial": "idioms_partial.py",
    "linen_doc": "idioms_linen_doc.py",
    "linen_idioms": "idioms_linen.py",
}
#: A PEP 695 generic NNX module, written into the project at test time (the
#: repository's ruff targets Python 3.10, which cannot parse it).
PEP695_SOURCE = '''"""A PEP 695 generic NNX module."""

from __future__ import annotations

import jax
from flax import nnx


class Box[T](nnx.Module):
    """Holds a linear layer; generic in what it tags."""

    def __init__(self, din: int, *, tag: T | None = None, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, din, rngs=rngs)
        self.tag = tag

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)

    def tagged(self, tag: T) -> tuple[T, int]:
        return tag, 1
'''
TARGETS = {m: f"idiompkg.{m}" for m in MODULES}
if PEP695:
    MODULES["pep695"] = "idioms_pep695.py"
    TARGETS["pep695"] = "idiom_pep695"
X = jnp.arange(12.0).reshape(3, 4) / 10


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("idiomproj")
    sys.path.insert(0, str(FIXTURES))
    sys.path.insert(0, str(d))
    old = Path.cwd()
    os.chdir(d)
    if PEP695:
        (d / "idiom_pep695.py").write_text(PEP695_SOURCE)
    try:
        for m, out in MODULES.items():
            text = generate.generate([TARGETS[m]], out)
            assert text == generate.generate([TARGETS[m]], out)
            (d / out).write_text(text)
    finally:
        os.chdir(old)
    importlib.invalidate_caches()
    mods = {m: importlib.import_module(out[:-3]) for m, out in MODULES.items()}
    yield d, mods
    sys.path.remove(str(FIXTURES))
    sys.path.remove(str(d))


def text_of(project, m: str) -> str:
    d, _ = project
    return (d / MODULES[m]).read_text()


def test_ruff_and_pyright_clean(project):
    d, _ = project
    files = list(MODULES.values())
    lint = ruff("check", "--isolated", "--no-cache", *files, cwd=d)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    sources = [PKG / f"{m}.py" for m in MODULES if m != "pep695"]
    sources += [d / "idiom_pep695.py"] if PEP695 else []
    errors = new_pyright_errors(files, sources, cwd=d, extra_paths=(FIXTURES,))
    assert not errors, "\n".join(map(str, errors))


def _class_head(text: str, name: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"class {name}")]
    return line


# -- item 3a: generic classes ---------------------------------------------------


def test_generic_wrapper_declares_the_same_type_variables(project):
    _, mods = project
    text = text_of(project, "generic")
    assert _class_head(text, "Agent") == "class Agent(nn.Module, Generic[TObs, TAct]):"
    assert "from idiompkg.generic import P, TAct, TObs\n" in text
    assert "from typing import Generic\n" in text
    w = mods["generic"]
    import idiompkg.generic as G

    assert w.Agent.__parameters__ == (G.TObs, G.TAct)
    model = w.Agent[int, str](din=4)
    variables = model.init(jax.random.key(0), X)
    assert model.apply(variables, 1, ["a", "b"], method="act") == "a"


def test_generic_linen_module_gets_a_generic_nnx_wrapper(project):
    from flax import nnx

    _, mods = project
    text = text_of(project, "linen_idioms")
    assert _class_head(text, "Tagged") == "class Tagged(nnx.Module, Generic[T]):"
    w = mods["linen_idioms"]
    m = w.Tagged[str](features=2, tag="t", rngs=nnx.Rngs(0))
    assert m(X).shape == (2,)
    assert m.tagged("v") == ("v", "t")


@pytest.mark.skipif(not PEP695, reason="PEP 695 syntax needs Python 3.12")
def test_pep695_class_keeps_its_type_parameters(project):
    _, mods = project
    text = text_of(project, "pep695")
    assert _class_head(text, "Box") == "class Box[T](nn.Module):"
    assert "tag: T | None = None" in text
    assert [t.__name__ for t in mods["pep695"].Box.__type_params__] == ["T"]


# -- item 3b: ParamSpec *args / **kwargs ---------------------------------------


def test_paramspec_method_has_no_train_between_args_and_kwargs(project):
    _, mods = project
    text = text_of(project, "generic")
    tree = ast.parse(text)
    (run,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run"
    ]
    assert [a.arg for a in run.args.kwonlyargs] == []
    assert run.args.vararg.arg == "args" and run.args.kwarg.arg == "kwargs"
    assert '_rt.call(self, "run", (fn, *args), {**kwargs}, None)' in text
    # the mode comes from nnxgen.runtime.mode
    import nnxgen.runtime as rt

    model = mods["generic"].Agent(din=4)
    variables = model.init(jax.random.key(0), X)
    with rt.mode(train=False):
        y = model.apply(variables, lambda a, *, b: a + b, X, b=1.0, method="run")
    ref = model.apply(variables, X + 1.0)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-6)
    # the Linen direction adds nothing there either
    assert "*args: P.args, **kwargs: P.kwargs" in text_of(project, "linen_idioms")


# -- item 3c: a method named like a builtin -------------------------------------


def test_builtin_annotation_beside_a_method_of_that_name(project):
    for m in ("shadow", "linen_idioms"):
        text = text_of(project, m)
        assert "idx: slice | int = 0" in text, m
        assert ".slice |" not in text, m


# -- item 3d: NoReturn ------------------------------------------------------------


def test_noreturn_method_body_raises(project):
    from flax import nnx

    _, mods = project
    for m in ("shadow", "linen_idioms"):
        text = text_of(project, m)
        assert (
            'raise AssertionError("fail returned; its annotation says it never does")'
            in text
        )
        assert 'return _rt.call(self, "fail"' not in text
        assert 'return _rt.linen_call(self, "fail"' not in text
    model = mods["shadow"].Batch(din=4)
    variables = model.init(jax.random.key(0), X)
    with pytest.raises(RuntimeError, match="boom"):
        model.apply(variables, "boom", method="fail", train=False)
    tagged = mods["linen_idioms"].Tagged(rngs=nnx.Rngs(0))
    with pytest.raises(RuntimeError, match="boom"):
        tagged.fail("boom")


# -- item 3e: bare Callable with a class default --------------------------------


def test_bare_callable_with_class_default_stays_callable(project):
    _, mods = project
    assert "    embed_layer: Callable = _NnxPatchEmbed\n" in text_of(project, "shadow")
    assert "block_cls: Callable = _LinenBlock," in text_of(project, "linen_idioms")
    model = mods["shadow"].Vit(din=4)
    variables = model.init(jax.random.key(0), X)
    assert model.apply(variables, X, train=False).shape == (3, 4)


# -- item 4: one bad class does not block its module ----------------------------


def test_module_target_skips_the_class_that_cannot_be_wrapped(project):
    _, mods = project
    text = text_of(project, "partial")
    header = text.split("\nfrom __future__")[0]
    assert "# nnxgen-skipped (cannot be wrapped; the other classes are):\n" in header
    assert (
        "#   idiompkg.partial:Bad: Bad.__init__ parameter 'cfg': cannot resolve"
        in header
    )
    assert [ln for ln in text.splitlines() if ln.startswith("class ")] == [
        "class Good(nn.Module):",
        "class AlsoGood(nn.Module):",
    ]
    assert hasattr(mods["partial"], "Good") and not hasattr(mods["partial"], "Bad")
    linen = text_of(project, "linen_idioms")
    assert "#   idiompkg.linen_idioms:Broken: Broken.__init__ parameter 'cfg'" in linen
    assert "class Broken" not in linen


@pytest.fixture
def in_tmp(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_skips_names_and_exits_zero(in_tmp):
    res = CliRunner().invoke(main, ["wrap", "idiompkg.partial", "-o", "p.py"])
    assert res.exit_code == 0, res.output
    assert (
        "nnxgen: skipped idiompkg.partial:Bad (in p.py): Bad.__init__ parameter"
        in res.stderr
    )
    assert "(2 wrappers)" in res.stdout
    assert "idiompkg.partial:Bad" in (in_tmp / "p.py").read_text()


def test_cli_strict_fails_and_writes_nothing(in_tmp):
    res = CliRunner().invoke(
        main, ["wrap", "idiompkg.partial", "-o", "p.py", "--strict"]
    )
    assert res.exit_code == 1
    assert (
        "nnxgen: error: 1 class(es) of idiompkg.partial cannot be wrapped (--strict)"
        in res.stderr
    )
    assert "idiompkg.partial:Bad" in res.stderr
    assert not (in_tmp / "p.py").exists()


def test_cli_named_class_and_nothing_wrapped_still_fail(in_tmp):
    res = CliRunner().invoke(main, ["wrap", "idiompkg.partial:Bad", "-o", "p.py"])
    assert res.exit_code == 1
    assert "cannot resolve the name 'Hidden'" in res.stderr
    res = CliRunner().invoke(main, ["wrap", "idiompkg.allbad", "-o", "p.py"])
    assert res.exit_code == 1
    assert "nothing could be wrapped: idiompkg.allbad:OnlyBad:" in res.stderr
    assert sorted(p.name for p in in_tmp.iterdir()) == []


def test_check_compares_the_skip_list(in_tmp):
    assert (
        CliRunner().invoke(main, ["wrap", "idiompkg.partial", "-o", "p.py"]).exit_code
        == 0
    )
    assert CliRunner().invoke(main, ["check", "p.py"]).exit_code == 0
    path = in_tmp / "p.py"
    text = path.read_text()
    path.write_text(
        text.replace("#   idiompkg.partial:Bad", "#   idiompkg.partial:Gone")
    )
    res = CliRunner().invoke(main, ["check", "p.py"])
    assert res.exit_code == 1 and "p.py is stale" in res.output
    # without the skip list at all: stale too
    lines = [
        ln
        for ln in text.splitlines(keepends=True)
        if "skipped" not in ln and "Bad" not in ln
    ]
    path.write_text("".join(lines))
    assert CliRunner().invoke(main, ["check", "p.py"]).exit_code == 1


# -- item 5a: no run-time repr in a Linen class's docstring ----------------------


def test_linen_docstring_drops_dataclass_signature(project):
    text = text_of(project, "linen_doc")
    assert "0x" not in text and "_Sentinel" not in text and "parent:" not in text
    (stack,) = [
        n
        for n in ast.parse(text).body
        if isinstance(n, ast.ClassDef) and n.name == "Stack"
    ]
    assert ast.get_docstring(stack) == "The stack of a T5-style model."
    (plain,) = [
        n
        for n in ast.parse(text).body
        if isinstance(n, ast.ClassDef) and n.name == "Plain"
    ]
    assert ast.get_docstring(plain) == "A Linen module with its own docstring."


def test_linen_docstring_output_is_the_same_in_another_process(tmp_path):
    """``nnxgen check`` in a new process (other memory addresses) finds it up to date."""
    env = {"PYTHONPATH": str(FIXTURES)}
    res = run_cli("wrap", "idiompkg.linen_doc", "-o", "d.py", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("check", "d.py", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr


# -- item 5b: a Linen field `f: X = None` ----------------------------------------


def test_linen_none_default_field_keeps_its_annotation(project):
    from flax import nnx

    _, mods = project
    text = text_of(project, "linen_doc")
    assert "        config: Config = None,\n" in text
    assert "Config | None" not in text
    m = mods["linen_doc"].Stack(rngs=nnx.Rngs(0))
    m.eval()
    assert m(X).shape == (3, 4)
