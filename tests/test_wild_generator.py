"""The generator on shapes found in third-party NNX packages (issue 13, items 5-10).

Reproductions live in ``tests/fixtures/wildpkg``: a PyG-style layer with a
parameter named ``nn``, a class attribute holding a function, jaxtyping
annotations, a ``**kwargs``-only constructor, a class made by a factory, raw
docstrings, ``nnx.List[...]`` annotations, an NNX class as a default, a long
aliased import.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner
from flax import nnx

from nnxgen import generate
from nnxgen.cli import main
from tests.helpers import ROOT, load_variables, pyright, ruff, same

FIXTURES = ROOT / "tests" / "fixtures"
MODULES = [
    "graph",
    "vision",
    "ppo",
    "factory",
    "misc",
    "some_long_module_name_for_imports",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """wildpkg.<module> -> wild_<module>.py in a user's project directory."""
    d = tmp_path_factory.mktemp("wildproj")
    sys.path.insert(0, str(FIXTURES))
    sys.path.insert(0, str(d))
    old = Path.cwd()
    os.chdir(d)
    try:
        for m in MODULES:
            text = generate.generate([f"wildpkg.{m}"], f"wild_{m}.py")
            assert text == generate.generate([f"wildpkg.{m}"], f"wild_{m}.py")
            (d / f"wild_{m}.py").write_text(text)
    finally:
        os.chdir(old)
    importlib.invalidate_caches()
    mods = {m: importlib.import_module(f"wild_{m}") for m in MODULES}
    yield d, mods
    sys.path.remove(str(FIXTURES))
    sys.path.remove(str(d))


def text_of(project, m: str) -> str:
    d, _ = project
    return (d / f"wild_{m}.py").read_text()


@pytest.mark.slow  # ruff + pyright runs
def test_lint_format_and_pyright_clean(project):
    d, _ = project
    files = [f"wild_{m}.py" for m in MODULES]
    lint = ruff("check", "--isolated", "--no-cache", *files, cwd=d)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = ruff("format", "--isolated", "--check", "--no-cache", *files, cwd=d)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    res = pyright(*files, cwd=d, extra_paths=(FIXTURES,))
    assert res.returncode == 0, res.stdout + res.stderr


def init_apply(model, nnx_model, *args):
    """Wrapper output and the pure NNX module's output with the wrapper's variables."""
    variables = model.init(jax.random.key(0), *args, train=False)
    y = model.apply(variables, *args, train=False)
    ref = load_variables(nnx_model, variables)(*args)
    return y, ref


def assert_close(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6)


def wrapper_methods(text: str, cls_name: str) -> list[str]:
    """Methods the generated file's class body defines, in order."""
    import ast

    (cls,) = [
        n
        for n in ast.parse(text).body
        if isinstance(n, ast.ClassDef) and n.name == cls_name
    ]
    return [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]


X = jnp.arange(12.0).reshape(3, 4) / 10


# -- item 5: parameter names are the user's API -------------------------------


def test_param_named_nn_stays_nn_and_linen_is_aliased(project):
    _, mods = project
    w = mods["graph"]
    text = text_of(project, "graph")
    assert "import flax.linen as _nn\n" in text
    assert "import flax.linen as nn\n" not in text
    assert "class GINConv(_nn.Module):" in text and "    nn: _nn.Module\n" in text
    assert "nn_" not in text and "Renamed" not in text
    assert list(w.GINConv.__dataclass_fields__)[:3] == ["nn", "eps", "train_eps"]
    import wildpkg.graph as G

    sig = inspect.signature(G.GINConv.__init__).parameters
    assert same(w.GINConv.__dataclass_fields__["eps"].default, sig["eps"].default)
    # the user's call, PyG style, and numbers equal to pure NNX
    model = w.GINConv(nn=w.MLP(din=4, dout=4), eps=0.5)
    adj = jnp.ones((3, 3))
    y, ref = init_apply(
        model, G.GINConv(G.MLP(4, 4, rngs=nnx.Rngs(0)), eps=0.5), X, adj
    )
    assert_close(y, ref)


def test_fields_named_any_and_dataclasses_are_kept(project):
    _, mods = project
    text = text_of(project, "graph")
    assert (
        "    Any: int = 1\n" in text and "    dataclasses: dict | None = None\n" in text
    )
    w = mods["graph"]
    assert w.Odd(Any=3).Any == 3
    import wildpkg.graph as G

    y, ref = init_apply(w.Odd(Any=3), G.Odd(3, rngs=nnx.Rngs(0)), X)
    assert_close(y, ref)


def test_renames_only_for_linen_names_with_true_reason(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.chdir(tmp_path)
    text = generate.generate(["errpkg.reserved:Named"], "named.py")
    assert (
        "# Renamed (NNX name -> wrapper name, to avoid Linen's own attributes):" in text
    )
    assert "#   name -> name_\n" in text


# -- item 6: a class attribute holding a function is not a method -------------


def test_function_class_attribute_is_not_a_method(project):
    _, mods = project
    text = text_of(project, "vision")
    assert "jaxlib" not in text
    assert "def act_layer" not in text and "def norm" not in text
    w = mods["vision"]
    for name in ("Mlp", "TanhMlp"):
        assert wrapper_methods(text, name) == ["__call__"], name
        assert callable(getattr(w, name).__call__)


@pytest.mark.parametrize("name", ["Mlp", "TanhMlp"])
def test_function_class_attribute_wrapper_runs_like_nnx(project, name):
    _, mods = project
    import wildpkg.vision as V

    model = getattr(mods["vision"], name)(din=4, dhidden=8, dout=2)
    y, ref = init_apply(model, getattr(V, name)(4, 8, 2, rngs=nnx.Rngs(0)), X)
    assert y.shape == (3, 2)
    assert_close(y, ref)
    nnx_model = nnxgen_to_nnx(model, X)
    assert_close(nnx_model(X), y)


def nnxgen_to_nnx(model, x):
    from nnxgen import runtime

    variables = model.init(jax.random.key(0), x, train=False)
    return runtime.to_nnx(model, variables, train=False)


# -- item 7: jaxtyping dimension strings are not forward references -----------


def test_jaxtyping_dimensions_are_kept(project):
    _, mods = project
    text = text_of(project, "ppo")
    assert 'x: Float[Array, "batch dim"]' in text
    assert 'key: Key[Array, "batch"]' in text
    assert ') -> Float[Array, "batch dim"]:' in text
    assert "from jaxtyping import Array, Float, Key\n" in text
    params = inspect.signature(mods["ppo"].Noisy.__call__).parameters
    assert list(params) == ["self", "x", "key", "train"]


# -- item 8: a **kwargs-only constructor gets a dict field --------------------


def test_kwargs_only_constructor_gets_a_dict_field(project):
    _, mods = project
    text = text_of(project, "ppo")
    assert (
        "    sizes: dict[str, int] = dataclasses.field(default_factory=dict)\n" in text
    )
    w = mods["ppo"]
    assert hasattr(w, "Scale") and hasattr(w, "Noisy")  # the rest of the module too
    import wildpkg.ppo as P

    model = w.Splitter(sizes={"a": 1, "b": 3})
    y, ref = init_apply(model, P.Splitter(a=1, b=3), X)
    assert set(y) == {"a", "b"} and y["b"].shape == (3, 3)
    assert_close(y, ref)


# -- item 9 ------------------------------------------------------------------


def test_long_alias_import_is_wrapped_as_ruff_does(project):
    text = text_of(project, "some_long_module_name_for_imports")
    assert (
        "from wildpkg.some_long_module_name_for_imports import (\n"
        "    AVeryLongClassNameForWrappingTheImport as "
        "_NnxAVeryLongClassNameForWrappingTheImport,\n)\n"
    ) in text


def test_nnx_list_annotation_is_a_list_of_wrappers(project):
    _, mods = project
    text = text_of(project, "misc")
    assert "    features: list[Feature]\n" in text and "nn.Module[" not in text
    w = mods["misc"]
    import wildpkg.misc as M

    model = w.Stack(features=[w.Feature(dim=4), w.Feature(dim=4)])
    nnx_model = M.Stack(nnx.List([M.Feature(4, rngs=nnx.Rngs(i)) for i in range(2)]))
    y, ref = init_apply(model, nnx_model, X)
    assert_close(y, ref)


def test_nnx_class_default_is_typed_as_a_class(project):
    _, mods = project
    text = text_of(project, "misc")
    assert "    norm: type[nnx.Module] = nnx.LayerNorm\n" in text
    w = mods["misc"]
    import wildpkg.misc as M

    sig = inspect.signature(M.Gauss.__init__).parameters
    assert w.Gauss.__dataclass_fields__["norm"].default is sig["norm"].default


def test_importable_default_is_copied(project):
    _, mods = project
    text = text_of(project, "misc")
    assert "    width_factor: float = np.log(np.exp(1) - 1)\n" in text
    assert "nnx_default" not in text
    w = mods["misc"]
    import wildpkg.misc as M

    sig = inspect.signature(M.Gauss.__init__).parameters
    assert same(
        w.Gauss.__dataclass_fields__["width_factor"].default,
        sig["width_factor"].default,
    )
    y, ref = init_apply(w.Gauss(dim=4), M.Gauss(4, rngs=nnx.Rngs(0)), X)
    assert_close(y, ref)


def test_raw_docstrings_stay_raw(project):
    _, mods = project
    text = text_of(project, "misc")
    assert (
        '    r"""Radial basis :math:`\\mathcal{F}(x) = \\exp(-x^2 / \\sigma)`."""\n'
        in text
    )
    assert '        r"""Applies :math:`\\exp(-x^2)`."""\n' in text
    assert "\\\\" not in text
    import wildpkg.misc as M

    w = mods["misc"]
    assert w.Gauss.__doc__ == M.Gauss.__doc__
    assert w.Gauss.__call__.__doc__ == M.Gauss.__call__.__doc__


def test_methods_keep_source_order(project):
    _, mods = project
    w = mods["misc"]
    assert wrapper_methods(text_of(project, "misc"), "Gauss") == [
        "__call__",
        "zeta",
        "alpha",
    ]
    assert [n for n in ("__call__", "zeta", "alpha") if callable(getattr(w.Gauss, n))]


# -- item 10: classes that are not plain top-level class statements -----------


def test_factory_made_class_is_named_as_the_target(project):
    _, mods = project
    text = text_of(project, "factory")
    assert "from wildpkg.factory import Dyn as _NnxDyn\n" in text
    assert "class Dyn(nn.Module):" in text and "Made" not in text.replace("Made by", "")
    w = mods["factory"]
    import wildpkg.factory as F

    y, ref = init_apply(w.Dyn(din=4, scale=2.0), F.Dyn(4, 2.0, rngs=nnx.Rngs(0)), X)
    assert y.shape == (3, 3)
    assert_close(y, ref)
    assert w.Plain.__nnxgen__.nnx_class is F.Plain


def test_factory_made_class_target_and_rename(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.chdir(tmp_path)
    text = generate.generate(["wildpkg.factory:Dyn"], "dyn.py")
    assert "class Dyn(nn.Module):" in text
    text = generate.generate(["wildpkg.factory:Dyn=Dense3"], "dyn.py")
    assert "class Dense3(nn.Module):" in text and "import Dyn as _NnxDyn" in text
    # made with type() (its __module__ is abc's), and a module-level alias
    text = generate.generate(
        ["wildpkg.factory:Built", "wildpkg.factory:PlainAlias"], "b.py"
    )
    assert "class Built(nn.Module):\n    k: float = 2.0\n" in text
    assert "from wildpkg.factory import Built as _NnxBuilt\n" in text
    assert "class PlainAlias(nn.Module):" in text
    (tmp_path / "b.py").write_text(text)
    import wildpkg.factory as F

    b = load_module(tmp_path / "b.py")
    model = b.Built(k=3.0)
    v = model.init(jax.random.key(0), X)
    np.testing.assert_allclose(model.apply(v, X), F.Built(3.0)(X))
    assert b.PlainAlias.__nnxgen__.nnx_class is F.Plain


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"wild_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up
    spec.loader.exec_module(mod)
    return mod


def test_module_target_lists_each_class_once(project):
    text = text_of(project, "factory")
    assert [line for line in text.splitlines() if line.startswith("class ")] == [
        "class Dyn(nn.Module):",
        "class Plain(nn.Module):",
    ]


@pytest.mark.parametrize("bad", ["class", "None", "lambda", "3x"])
def test_rename_to_a_keyword_is_a_one_line_error(tmp_path, monkeypatch, bad):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(
        main, ["wrap", f"wildpkg.factory:Plain={bad}", "-o", "out.py"]
    )
    assert res.exit_code == 1, res.output
    err = res.stderr
    assert err == (
        f"nnxgen: error: 'wildpkg.factory:Plain={bad}': {bad!r} is not a valid class name\n"
    ), err
    assert not (tmp_path / "out.py").exists()
