"""The generator on third-party-style code: aliased/relative/TYPE_CHECKING imports,
string annotations, inherited __init__, positional-/keyword-only parameters,
defaults that are calls, attributes, lambdas, enum members and nested classes."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nnxgen import generate
from tests.helpers import ROOT, load_variables, ruff, same

FIXTURES = ROOT / "tests" / "fixtures"


pytestmark = pytest.mark.slow  # ruff / pyright on the awkward-signature package


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's project dir; nastypkg is importable like an installed package."""
    d = tmp_path_factory.mktemp("nastyproj")
    sys.path.insert(0, str(FIXTURES))
    sys.path.insert(0, str(d))
    old = Path.cwd()
    import os

    os.chdir(d)
    try:
        text = generate.generate(["nastypkg.models"], "nasty_linen.py")
        assert text == generate.generate(["nastypkg.models"], "nasty_linen.py")
    finally:
        os.chdir(old)
    (d / "nasty_linen.py").write_text(text)
    importlib.invalidate_caches()
    yield d, importlib.import_module("nasty_linen")
    sys.path.remove(str(FIXTURES))
    sys.path.remove(str(d))


def test_output_is_lint_clean_and_formatted(project):
    # pyright: tests/test_typing.py (no error the source's own line lacks)
    d, _ = project
    lint = ruff("check", "--isolated", "--no-cache", "nasty_linen.py", cwd=d)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = ruff("format", "--isolated", "--check", "--no-cache", "nasty_linen.py", cwd=d)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_source_text_is_kept(project):
    _, mod = project
    text = Path(mod.__file__).read_text()
    # defaults and annotations as written, names imported the way the source imports them
    assert "dtype: jnp.dtype = jnp.float32" in text
    assert "act: Callable[[JArray], JArray] = jax.nn.gelu" in text
    assert "mode: Act = Act.TANH" in text
    assert "bias_init: fnnx.Initializer = fnnx.initializers.zeros_init()" in text
    assert "maybe: Union[int, str] = SCALE" in text
    assert "cfg: _NnxNasty.Config = _NnxNasty.Config()" in text
    assert "import jax.numpy as jnp" in text and "from flax import nnx as fnnx" in text
    assert "from nastypkg.base import Activation as Act" in text
    # TYPE_CHECKING-only names stay behind TYPE_CHECKING
    tc_block = text.split("if TYPE_CHECKING:")[1].split("\n\n\n")[0]
    assert "from jax import Array as JArray" in tc_block
    # not importable as written -> taken from the NNX signature, and said so
    assert "source default `lambda x: x * 1.0` is not importable" in text
    assert '_rt.nnx_default(_NnxNasty, "post")' in text
    assert "<function" not in text and "<class" not in text and "<PjitFunction" not in text



def test_spellings_are_kept_the_way_ruff_formats_them(project):
    """Literals as ruff prints them, container defaults lint-clean, implicit
    Optionals written out, docstring layout kept (the whole file passes ruff and
    pyright: see above)."""
    _, mod = project
    text = Path(mod.__file__).read_text()
    body = text.split("class Spellings(nn.Module):")[1]
    for line in [
        'tag: bytes = b"raw"',
        "big: float = 1e05",
        "half: float = 0.5",
        "two: float = 2.0",
        "mask: int = 0xFF",
        "imag: complex = 1j",
        "name_: str = \"it's\"",
        "table: dict = dataclasses.field(default_factory=dict)",
        "items: list = dataclasses.field(default_factory=list)",
        "pair: tuple = tuple()",
        "count: int | None = None",
        "opts: dict = _Spellings_call_opts_default,",
        "n: int | None = None,",
        "eps: float = 0.1,",
        '"""\u0020"Quoted" summary."""',
        "s: str = 'a \"b\"'",
    ]:
        assert line in body, line
    assert "\n_Spellings_call_opts_default = {}\n" in text
    assert "# ruff: noqa: C408, UP007, UP045\n" in text  # C408: `tuple()` kept
    from nastypkg import models

    w = mod.Spellings()
    n = models.Spellings(rngs=nnx.Rngs(0))
    assert inspect.getdoc(w.describe) == inspect.getdoc(n.describe)
    assert "\n    indented example" in inspect.getdoc(w.describe)
    for f in dataclasses.fields(mod.Spellings)[:-2]:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        source = inspect.signature(models.Spellings.__init__).parameters[f.name]
        assert same(default, source.default), f.name
    sig = inspect.signature(mod.Spellings.__call__).parameters
    assert sig["opts"].default == {} and sig["lst"].default == []


def test_fields_mirror_constructor_defaults(project):
    from nastypkg import base, models

    _, mod = project
    for wrapper, nnx_cls, renamed in [
        (mod.Nasty, models.Nasty, {}),
        (mod.Inherited, base.BaseBlock, {"init": "init_"}),
    ]:
        params = [
            p
            for p in list(inspect.signature(nnx_cls.__init__).parameters.values())[1:]
            if p.name != "rngs"
        ]
        fields = {f.name: f for f in dataclasses.fields(wrapper)}
        for p in params:
            f = fields[renamed.get(p.name, p.name)]
            if p.default is inspect.Parameter.empty:
                assert f.default is dataclasses.MISSING
            else:
                assert same(f.default, p.default), (p.name, f.default, p.default)


def test_method_signatures_mirror_nnx(project):
    from nastypkg import models

    _, mod = project
    for name in ("__call__", "project"):
        src = inspect.signature(inspect.unwrap(getattr(models.Nasty, name)))
        gen = inspect.signature(getattr(mod.Nasty, name))
        src_params = [p for p in src.parameters.values() if p.name != "rngs"]
        gen_params = [p for p in gen.parameters.values() if not (p.name == "train" and "train" not in src.parameters)]
        assert [(p.name, p.kind) for p in gen_params] == [(p.name, p.kind) for p in src_params]
        for g, s in zip(gen_params, src_params):
            assert same(g.default, s.default) or (g.default is s.default)
            assert str(g.annotation).strip("'") == str(s.annotation).strip("'")
        assert str(gen.return_annotation).strip("'") == str(src.return_annotation).strip("'")
    assert "_private" not in vars(mod.Nasty)
    gen_doc, src_doc = mod.Nasty.__call__.__doc__, models.Nasty.__call__.__doc__
    assert inspect.cleandoc(gen_doc) == inspect.cleandoc(src_doc)
    # a tab is content, kept as written (Python 3.13's compiler expands tabs in every
    # docstring, the source's too: then neither has it)
    assert ("a tab\there" in gen_doc) == ("a tab\there" in src_doc)
    assert ("a tab\there" in gen_doc) == (sys.version_info < (3, 13))
    assert "backslash \\ and" in gen_doc
    assert '"""quotes"""' in mod.Inherited.__doc__ and "\\backslash" in mod.Inherited.__doc__



def test_round_trip_numbers(project):
    from nastypkg import base, models

    _, mod = project
    x = jnp.linspace(-1, 1, 6).reshape(2, 3)
    e = jnp.full((2, 3), 0.5)
    model = mod.Nasty(3, 3)
    v = model.init(jax.random.key(0), x)
    ref = load_variables(models.Nasty(3, 3, rngs=nnx.Rngs(5)), v)
    y = model.apply(v, x, e, scale=3.0, flag=True)
    assert jnp.allclose(y, ref(x, e, scale=3.0, flag=True), atol=1e-6)
    for train in (False, True):
        got = model.apply(v, x, 0.5, method="project", train=train)
        assert jnp.allclose(got, ref.project(x, 0.5, train=train), atol=1e-6)

    inh = mod.Inherited(3, 2.0, act=base.Activation.TANH)
    vi = inh.init(jax.random.key(1), x)
    assert jnp.allclose(vi["params"]["w"], jnp.ones(3))  # custom init ran
    ref_i = load_variables(models.Inherited(3, 2.0, act=base.Activation.TANH, rngs=nnx.Rngs(0)), vi)
    assert jnp.allclose(inh.apply(vi, x), ref_i(x))
