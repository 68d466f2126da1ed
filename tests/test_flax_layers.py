"""Every public layer exported by flax.nnx wraps, type-checks and keeps its defaults."""

from __future__ import annotations

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nnxgen import runtime as rt
from tests.helpers import load_variables, pyright, ruff, same

LAYERS = [
    "Linear", "LinearGeneral", "Einsum", "Conv", "ConvTranspose", "Embed", "BatchNorm",
    "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm", "Dropout", "PReLU",
    "MultiHeadAttention", "LoRA", "LoRALinear", "LSTMCell", "GRUCell", "SimpleCell",
    "OptimizedLSTMCell", "RNN", "Bidirectional", "WeightNorm", "SpectralNorm", "Sequential",
]  # fmt: skip


pytestmark = pytest.mark.slow  # every flax.nnx layer, pyright


@pytest.fixture(scope="module")
def L(wrap):
    return wrap(*[f"flax.nnx:{name}" for name in LAYERS])


def test_all_layers_generate_into_one_file(L):
    assert [c for c in LAYERS if isinstance(getattr(L, c, None), type)] == LAYERS


def test_generated_layers_file_is_lint_clean_and_formatted(L):
    lint = ruff("check", "--no-cache", "--isolated", L.__file__)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = ruff("format", "--check", "--no-cache", "--isolated", L.__file__)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_generated_layers_file_type_checks(L):
    res = pyright(L.__file__)
    assert res.returncode == 0, res.stdout + res.stderr



@pytest.mark.parametrize("name", LAYERS)
def test_field_defaults_equal_nnx_defaults(L, name):
    wrapper = getattr(L, name)
    nnx_cls = getattr(nnx, name)
    sig = inspect.signature(nnx_cls.__init__)
    fields = {f.name: f for f in dataclasses.fields(wrapper) if f.name not in ("parent", "name")}
    expected = [p for p in list(sig.parameters.values())[1:] if p.name != "rngs"]
    assert [p.name for p in expected] == list(fields)[: len(expected)]
    for p in expected:
        f = fields[p.name]
        if p.kind is p.VAR_POSITIONAL:
            assert f.default == ()
            continue
        if p.kind is p.VAR_KEYWORD:
            assert f.default_factory() == {}
            continue
        if p.default is inspect.Parameter.empty:
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            continue
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert same(value, p.default), (name, p.name, value, p.default)



X = jnp.linspace(-1.0, 1.0, 2 * 5 * 3).reshape(2, 5, 3)


def _cases(L):
    r = lambda: nnx.Rngs(1)  # noqa: E731
    return {
        "RNN": (L.RNN(L.LSTMCell(3, 4)), lambda: nnx.RNN(nnx.LSTMCell(3, 4, rngs=r()), rngs=r())),
        "Bidirectional": (
            L.Bidirectional(L.RNN(L.GRUCell(3, 4)), L.RNN(L.GRUCell(3, 4))),
            lambda: nnx.Bidirectional(
                nnx.RNN(nnx.GRUCell(3, 4, rngs=r()), rngs=r()),
                nnx.RNN(nnx.GRUCell(3, 4, rngs=r()), rngs=r()),
                rngs=r(),
            ),
        ),
        "WeightNorm": (
            L.WeightNorm(L.Linear(3, 4)),
            lambda: nnx.WeightNorm(nnx.Linear(3, 4, rngs=r()), rngs=r()),
        ),
        "SpectralNorm": (
            L.SpectralNorm(L.Linear(3, 4), update_stats=False),
            lambda: nnx.SpectralNorm(nnx.Linear(3, 4, rngs=r()), update_stats=False, rngs=r()),
        ),
        "Sequential": (
            L.Sequential((L.Linear(3, 4), L.Linear(4, 2))),
            lambda: nnx.Sequential(nnx.Linear(3, 4, rngs=r()), nnx.Linear(4, 2, rngs=r())),
        ),
    }


@pytest.mark.parametrize("name", ["RNN", "Bidirectional", "WeightNorm", "SpectralNorm", "Sequential"])
def test_module_arguments_accept_generated_wrappers(L, name):
    wrapper, make_nnx = _cases(L)[name]
    variables = wrapper.init(jax.random.key(0), X)
    ref = load_variables(make_nnx(), variables)
    if name in ("WeightNorm", "SpectralNorm"):
        # flax's nnx.WeightNorm / nnx.SpectralNorm overwrite the wrapped layer's
        # kernel on every call, in eval too (in training SpectralNorm also its
        # power-iteration statistics): a write into an immutable collection, which
        # raises as in Linen (before issue 21 this test applied without mutable=
        # and the write was silently dropped).
        with pytest.raises(rt.ImmutableCollectionError, match='"params" is immutable'):
            wrapper.apply(variables, X, train=False)
        y, updates = wrapper.apply(variables, X, train=False, mutable=True)
        assert jnp.allclose(y, ref(X), atol=1e-6), name
        written = load_variables(make_nnx(), {**variables, **updates})
        for a, b in zip(
            jax.tree.leaves(nnx.state(written)), jax.tree.leaves(nnx.state(ref))
        ):
            assert jnp.allclose(a, b, atol=1e-6), name
        return
    y = wrapper.apply(variables, X)
    assert jnp.allclose(y, ref(X), atol=1e-6), name
