"""A public method named like a constructor parameter (issue 21, item 1).

``CNN(features: int)`` with a method ``features(self, x)``: the field keeps the
user's name (their constructor API), the method is wrapped as ``features_`` (more
``_`` where that is taken) with a comment in the class saying why, ``nnxgen
inspect`` lists it, and it runs the NNX class's method -- also where
``self.features = features`` shadows it on the instance (pure NNX:
``CNN.features(module, x)``). The same for the NNX wrapper of a Linen class whose
field and (inherited) method share a name. Fixtures: ``tests/fixtures/clashpkg``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnxgen import generate
from tests.helpers import ROOT, load_variables, ruff, run_cli
from tests.linen_helpers import linen_vars
from tests.typecheck import new_pyright_errors

FIXTURES = ROOT / "tests" / "fixtures"
X = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """clashpkg.nnx_models -> clash_linen.py, clashpkg.linen_models -> clash_nnx.py."""
    d = tmp_path_factory.mktemp("clashproj")
    sys.path[:0] = [str(FIXTURES), str(d)]
    texts = {}
    old = Path.cwd()
    os.chdir(d)  # import sections as ruff sees them from the user's project
    try:
        for targets, out in [
            (["clashpkg.nnx_models"], "clash_linen.py"),
            (["clashpkg.linen_models:CNN", "clashpkg.linen_models:Inline"], "clash_nnx.py"),
        ]:
            text = generate.generate(targets, out)
            assert text == generate.generate(targets, out)
            (d / out).write_text(text)
            texts[out] = text
    finally:
        os.chdir(old)
    importlib.invalidate_caches()
    mods = {
        out: importlib.import_module(out.removesuffix(".py")) for out in texts
    }
    yield d, texts, mods
    sys.path.remove(str(FIXTURES))
    sys.path.remove(str(d))


def _class_text(text: str, name: str) -> str:
    return text.split(f"\nclass {name}(")[1].split("\nclass ")[0]


# -- the generated text ---------------------------------------------------------

WHY = "(a constructor parameter's name, kept by the field)"


def test_field_keeps_the_name_and_the_method_is_renamed_with_a_comment(project):
    _, texts, _ = project
    cnn = _class_text(texts["clash_linen.py"], "CNN")
    assert "    features: int\n    din: int = 3\n" in cnn
    assert f"    #   features -> features_ {WHY}\n" in cnn
    assert "    def features_(self, x: jax.Array, *, train: bool | None = None)" in cnn
    assert 'return _rt.call(self, "features", (x,), {}, train)' in cnn
    assert '"""The hidden features' in cnn  # the docstring comes along
    assert "def features_of(" in cnn  # a method merely starting with the name is kept
    emb = _class_text(texts["clash_linen.py"], "Embedder")
    assert "    size: int\n    embed: int\n" in emb
    assert f"#   embed -> embed_ {WHY}" in emb and f"#   size -> size_ {WHY}" in emb
    assert "def embed_(" in emb and "def size_(" in emb
    # ``encode_`` is the other parameter's field: the method takes ``encode__``
    taken = _class_text(texts["clash_linen.py"], "Taken")
    assert "    encode: int\n    encode_: int = 1\n" in taken
    assert f"#   encode -> encode__ {WHY}" in taken
    assert "def encode__(" in taken and 'return _rt.call(self, "encode",' in taken


def test_linen_field_keeps_the_name_and_the_method_is_renamed(project):
    _, texts, mods = project
    why = "(a Linen field's name, kept by the constructor parameter)"
    for name, field, method in [("CNN", "features", "features"), ("Inline", "size", "size")]:
        cls_text = _class_text(texts["clash_nnx.py"], name)
        assert f"    #   {method} -> {method}_ {why}\n" in cls_text
        assert f"    def {method}_(self, x: jax.Array) -> jax.Array:" in cls_text
        assert f'return _rt.linen_call(self, "{method}", (x,), {{}})' in cls_text
        # dataclasses made the function the field's default: no value to pass, so
        # the constructor parameter is required, as written in the source
        sig = inspect.signature(getattr(mods["clash_nnx.py"], name).__init__)
        assert sig.parameters[field].default is inspect.Parameter.empty
    assert "_default = _rt.linen_default" not in texts["clash_nnx.py"]


@pytest.mark.slow  # ruff + pyright runs
def test_generated_files_are_lint_clean_and_type_check(project):
    d, texts, _ = project
    for out in texts:
        lint = ruff("check", "--isolated", "--no-cache", out, cwd=d)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        fmt = ruff("format", "--isolated", "--check", "--no-cache", out, cwd=d)
        assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    sources = sorted((FIXTURES / "clashpkg").glob("*.py"))
    errors = new_pyright_errors(
        sorted(texts), sources, cwd=d, extra_paths=(FIXTURES,)
    )
    assert not errors, "\n".join(map(str, errors))


# -- nnxgen inspect -------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "renamed", "why"),
    [
        ("clashpkg.nnx_models:CNN", "features_", "a constructor parameter's name"),
        ("clashpkg.nnx_models:Taken", "encode__", "a constructor parameter's name"),
        ("clashpkg.linen_models:CNN", "features_", "a Linen field's name"),
    ],
)
def test_inspect_lists_the_renamed_method(target, renamed, why):
    env = {"PYTHONPATH": str(FIXTURES)}
    res = run_cli("inspect", target, "--json", env=env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)["classes"][0]
    name = renamed.rstrip("_")
    assert name in [f["name"] for f in data["fields"]]
    (m,) = [m for m in data["methods"] if m["name"] == name]
    assert m["wrapper_name"] == renamed and m["renamed_because"].startswith(why)
    res = run_cli("inspect", target, env=env)
    assert res.returncode == 0, res.stderr
    assert f"    {renamed}(x) -> jax.Array  [runs {name}: {why}" in res.stdout


# -- NNX -> Linen: the renamed method runs the NNX class's method ---------------


def _pure(cls, variables, *args):
    return load_variables(cls(*args, rngs=nnx.Rngs(1)), variables)


def test_shadowed_method_runs_the_nnx_class_method(project):
    _, _, mods = project
    from clashpkg import nnx_models as N

    w = mods["clash_linen.py"]
    model = w.CNN(features=4)
    v = model.init(jax.random.key(0), X)
    ref_module = _pure(N.CNN, v, 4)
    assert ref_module.features == 4  # pure NNX: the attribute shadows the method
    ref = N.CNN.features(ref_module, X)
    y = model.apply(v, X, method="features_")
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    jitted = jax.jit(lambda v, x: model.apply(v, x, method="features_"))(v, X)
    np.testing.assert_allclose(jitted, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        model.apply(v, X, method=w.CNN.features_), ref, rtol=1e-6, atol=1e-6
    )
    # the field is the constructor's value, and __call__ is untouched
    assert model.features == 4
    np.testing.assert_allclose(model.apply(v, X), ref_module(X), rtol=1e-6, atol=1e-6)
    # init through the renamed method makes the same variables
    v2 = model.init(jax.random.key(0), X, method="features_")
    assert jax.tree.map(jnp.shape, v2) == jax.tree.map(jnp.shape, v)


def test_unshadowed_methods_run_like_nnx(project):
    """``Embedder`` does not store ``size`` / ``embed``: the methods are visible
    on the NNX instance, and the wrapper's renamed ones run them."""
    _, _, mods = project
    from clashpkg import nnx_models as N

    w = mods["clash_linen.py"]
    model = w.Embedder(size=3, embed=5)
    v = model.init(jax.random.key(0), X)
    ref_module = _pure(N.Embedder, v, 3, 5)
    for wname, ref in [("embed_", ref_module.embed(X)), ("size_", ref_module.size(X))]:
        y = model.apply(v, X, method=wname)
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
        fn = jax.jit(lambda v, x, m=wname: model.apply(v, x, method=m))
        np.testing.assert_allclose(fn(v, X), ref, rtol=1e-6, atol=1e-6)
    taken = w.Taken(encode=3, encode_=2)
    v = taken.init(jax.random.key(0), X)
    ref_module = _pure(N.Taken, v, 3, 2)
    np.testing.assert_allclose(
        taken.apply(v, X, method="encode__"),
        N.Taken.encode(ref_module, X),
        rtol=1e-6,
        atol=1e-6,
    )


# -- Linen -> NNX: the renamed method runs the Linen class's method -------------


def test_nnx_wrapper_runs_the_linen_method_the_field_shadows(project):
    _, _, mods = project
    from clashpkg import linen_models as L

    w = mods["clash_nnx.py"]
    m = w.CNN(4, rngs=nnx.Rngs(0))
    assert m.to_nnx__module.features == 4
    y_call = m(X)  # first call: makes every variable
    y = m.features_(X)
    variables = linen_vars(m)
    linen = L.CNN(4)
    # Linen itself cannot run it by name: the field shadows the method
    with pytest.raises(TypeError, match="must be a callable"):
        linen.apply(variables, X, method="features")
    ref = linen.apply(variables, X, method=L.CNN.features)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y_call, linen.apply(variables, X), rtol=1e-6, atol=1e-6)
    jitted = nnx.jit(lambda m, x: m.features_(x))(m, X)
    np.testing.assert_allclose(jitted, ref, rtol=1e-6, atol=1e-6)
    # the renamed method as the first call: Linen's init runs the class's function
    first = w.CNN(4, rngs=nnx.Rngs(0))
    y_first = first.features_(X)
    ref_first = linen.apply(linen_vars(first), X, method=L.CNN.features)
    np.testing.assert_allclose(y_first, ref_first, rtol=1e-6, atol=1e-6)
    assert set(linen_vars(first)["params"]) == {"dense"}


def test_nnx_wrapper_of_a_method_defined_after_the_field(project):
    _, _, mods = project
    from clashpkg import linen_models as L

    w = mods["clash_nnx.py"]
    m = w.Inline(size=2, rngs=nnx.Rngs(0))
    y = m.size_(X)
    variables = linen_vars(m)
    ref = L.Inline(2).apply(variables, X, method=L.Inline.size)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m(X) * 3.0, y, rtol=1e-6, atol=1e-6)
    jitted = nnx.jit(lambda m, x: m.size_(x))(m, X)
    np.testing.assert_allclose(jitted, ref, rtol=1e-6, atol=1e-6)
