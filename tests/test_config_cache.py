"""Constructor arguments Python cannot hash still hit the layout cache.

Current NNX model code takes its hyper-parameters as config objects: a frozen
dataclass holding lists, a plain dataclass, nested configs, dicts and lists, numpy
scalars. ``apply`` keys its cached layout by the *contents* of such arguments
(``nnxgen.runtime._linen_wrapper.keys``), recomputed on every call: the NNX constructor runs once
per configuration (each fixture class counts its runs in ``built``), a config
mutated between two calls gets its own layout, a jax array is keyed by identity (it
never changes), and an argument nothing can key (a numpy array) still works, tracing
the layout on every call as before.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import gc
import sys
import timeit
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnxgen import runtime as rt
from nnxgen.runtime._linen_wrapper.keys import Unkeyable, key_of
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
X = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)


@pytest.fixture(scope="module")
def W(wrap):
    sys.path.insert(0, str(FIXTURES))
    return wrap("configpkg.models")


@pytest.fixture(scope="module")
def M(W):
    from configpkg import models

    return models


@pytest.fixture(autouse=True)
def fresh_cache():
    rt.clear_cache()
    yield
    rt.clear_cache()


def _pure(nnx_cls, *args, variables):
    """The NNX module built directly, holding the wrapper's variables leaf by leaf."""
    module = nnx_cls(*args, rngs=nnx.Rngs(0))
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        tree = variables["params"]
        for k in path:
            tree = tree[k] if k in tree else tree[str(k)]
        var.set_value(tree)
    return module


def _built_by_applies(model, nnx_cls, variables, n=3, **kw):
    before = nnx_cls.built
    outs = [model.apply(variables, X, **kw) for _ in range(n)]
    return nnx_cls.built - before, outs


def test_frozen_dataclass_with_lists_is_cached(W, M):
    cfg = M.Config(widths=[8, 6], layer_types=["dense", "norm"])
    with pytest.raises(TypeError):
        hash(cfg)  # what made the runtime skip its cache before
    model = W.ConfigNet(cfg)
    v = model.init(jax.random.key(0), X)
    built, outs = _built_by_applies(model, M.ConfigNet, v)
    assert built == 1  # the layout, traced once; every apply after it is cached
    # an equal config in a new object (and a new wrapper) shares the layout
    built2, _ = _built_by_applies(W.ConfigNet(M.Config()), M.ConfigNet, v)
    assert built2 == 0
    ref = _pure(M.ConfigNet, cfg, variables=v)
    np.testing.assert_allclose(outs[-1], ref(X), rtol=1e-6, atol=1e-6)
    assert "scale" in v["params"]["layers"][2]  # the LayerNorm


def test_jitted_apply_traces_the_constructor_once(W, M):
    model = W.ConfigNet(M.Config())
    v = model.init(jax.random.key(0), X)
    before = M.ConfigNet.built
    for _ in range(3):  # a fresh function every time: jit's own cache never hits
        jax.jit(lambda v, x: model.apply(v, x))(v, X)
    assert M.ConfigNet.built - before == 1


def test_different_configs_never_share_a_layout(W, M):
    a = W.ConfigNet(M.Config(widths=[8, 6]))
    b = W.ConfigNet(M.Config(widths=[8, 5]))
    c = W.ConfigNet(M.Config(widths=[8, 6], layer_types=["dense", "dense"]))
    d = W.ConfigNet(M.Config(stem=M.Stem(width=8, use_bias=False)))
    e = W.ConfigNet(M.Config(act=M.Act.GELU))
    va, vb, vc, vd = (m.init(jax.random.key(0), X) for m in (a, b, c, d))
    assert a.apply(va, X).shape == (3, 6)
    assert b.apply(vb, X).shape == (3, 5)
    assert set(vc["params"]["layers"]) == {0, 1}  # no LayerNorm
    assert c.apply(vc, X).shape == (3, 6)
    assert "bias" not in vd["params"]["stem"]
    d.apply(vd, X)
    # same variables, another activation: the layouts differ, so do the numbers
    assert not np.allclose(a.apply(va, X), e.apply(va, X))
    np.testing.assert_allclose(
        e.apply(va, X), _pure(M.ConfigNet, M.Config(act=M.Act.GELU), variables=va)(X)
    )
    # another config's variables do not fit this layout: an error, not a stale layout
    with pytest.raises(Exception, match="layers"):
        a.apply(vb, X)


def test_mutated_config_gets_a_new_layout(W, M):
    cfg = M.MutableConfig(widths=[8, 6])
    model = W.MutableNet(cfg)
    v6 = model.init(jax.random.key(0), X)
    built, outs = _built_by_applies(model, M.MutableNet, v6, train=False)
    assert built == 1 and outs[0].shape == (3, 6)
    ref = _pure(M.MutableNet, M.MutableConfig(widths=[8, 6]), variables=v6)
    np.testing.assert_allclose(outs[0], ref(X), rtol=1e-6, atol=1e-6)

    cfg.widths.append(2)  # the same object, mutated in place: a new layout
    v2 = model.init(jax.random.key(0), X)
    assert set(v2["params"]["layers"]) == {0, 1, 2}
    built, outs = _built_by_applies(model, M.MutableNet, v2, train=False)
    assert built == 1 and outs[0].shape == (3, 2)
    ref = _pure(M.MutableNet, M.MutableConfig(widths=[8, 6, 2]), variables=v2)
    np.testing.assert_allclose(outs[0], ref(X), rtol=1e-6, atol=1e-6)
    # the old variables no longer fit the mutated config: the error names the
    # missing layer, nothing stale runs
    with pytest.raises(Exception, match="layers"):
        model.apply(v6, X, train=False)

    cfg.widths[:] = [8, 6]  # back to the first contents: its layout again, cached
    built, outs = _built_by_applies(model, M.MutableNet, v6, train=False)
    assert built == 0 and outs[0].shape == (3, 6)

    cfg.dropout = 0.5  # a float attribute: also part of the key
    built, _ = _built_by_applies(model, M.MutableNet, v6, train=False)
    assert built == 1
    y1 = model.apply(v6, X, train=True, rngs={"dropout": jax.random.key(1)})
    assert (np.asarray(y1) == 0).any()


def test_list_and_dict_arguments(W, M):
    model = W.DictNet([4, 8, 6], {"cls": 3, "box": 4})
    v = model.init(jax.random.key(0), X)
    built, outs = _built_by_applies(model, M.DictNet, v)
    assert built == 1
    assert outs[0]["cls"].shape == (3, 3) and outs[0]["box"].shape == (3, 4)
    ref = _pure(M.DictNet, [4, 8, 6], {"cls": 3, "box": 4}, variables=v)(X)
    for k in ("cls", "box"):
        np.testing.assert_allclose(outs[0][k], ref[k], rtol=1e-6, atol=1e-6)
    other = W.DictNet([4, 8, 6], {"cls": 5, "box": 4})
    assert other.apply(other.init(jax.random.key(0), X), X)["cls"].shape == (3, 5)


def test_numpy_scalar_argument(W, M):
    model = W.ScaledNet(4, 3, np.float32(2.0))
    v = model.init(jax.random.key(0), X)
    built, outs = _built_by_applies(model, M.ScaledNet, v)
    assert built == 1
    ref = _pure(M.ScaledNet, 4, 3, np.float32(2.0), variables=v)
    np.testing.assert_allclose(outs[0], ref(X), rtol=1e-6, atol=1e-6)
    # equal in Python, not the same argument: separate layouts
    assert key_of(W.ScaledNet(4, 3, np.float32(2.0))) != key_of(W.ScaledNet(4, 3, 2.0))
    assert key_of(W.ScaledNet(4, 3, 1)) != key_of(W.ScaledNet(4, 3, True))


def test_numpy_array_argument_stays_uncached(W, M):
    offset = np.arange(3.0)  # changes in place: never keyed
    model = W.OffsetNet(4, offset)
    with pytest.raises(Unkeyable):
        key_of(model)
    v = model.init(jax.random.key(0), X)
    built, outs = _built_by_applies(model, M.OffsetNet, v)
    assert built == 3  # traced on every apply, as before
    ref = _pure(M.OffsetNet, 4, offset, variables=v)
    np.testing.assert_allclose(outs[-1], ref(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outs[0], outs[-1])


def test_jax_array_argument_is_cached_by_identity(W, M):
    offset = jnp.arange(3.0)
    model = W.OffsetNet(4, offset)
    v = model.init(jax.random.key(0), X)
    built, outs = _built_by_applies(model, M.OffsetNet, v)
    assert built == 1  # a jax array never changes: the same object, one layout
    ref = _pure(M.OffsetNet, 4, offset, variables=v)
    np.testing.assert_allclose(outs[-1], ref(X), rtol=1e-6, atol=1e-6)
    # an equal array in another object is another key (traced once more), and
    # builds what it holds
    other = jnp.arange(3.0) * 2.0
    built2, outs2 = _built_by_applies(W.OffsetNet(4, other), M.OffsetNet, v)
    assert built2 == 1
    ref2 = _pure(M.OffsetNet, 4, other, variables=v)
    np.testing.assert_allclose(outs2[-1], ref2(X), rtol=1e-6, atol=1e-6)


def test_array_keys_hold_no_array_and_never_outlive_it():
    a = jnp.ones(3)
    k = key_of(a)
    assert k == key_of(a) and hash(k) == hash(key_of(a))
    assert k != key_of(jnp.ones(3))  # equal values, another object
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None  # the key kept no reference to the array
    for _ in range(50):  # a new array may get the dead one's id: never its key
        assert key_of(jnp.ones(3)) != k


# ---------------------------------------------------------------------------
# The keys themselves.


@dataclasses.dataclass
class _Inner:
    sizes: list[int] = dataclasses.field(default_factory=lambda: [1, 2])


@dataclasses.dataclass
class _Outer:
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    names: tuple[str, ...] = ("a", "b")
    table: dict = dataclasses.field(default_factory=lambda: {"k": [1.0]})


class _Color(enum.Enum):
    RED = 1


class _Plain:
    def __init__(self, n):
        self.n = n


class _Unhashable:
    """``__eq__`` without ``__hash__``: Python cannot hash it (a pydantic-like model)."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, _Unhashable) and self.n == other.n


def test_keys_follow_contents():
    a, b = _Outer(), _Outer()
    assert key_of(a) == key_of(b) and hash(key_of(a)) == hash(key_of(b))
    b.inner.sizes.append(3)  # nested mutation
    assert key_of(a) != key_of(b)
    b = _Outer(table={"k": [1]})  # 1 == 1.0, but not the same config
    assert key_of(a) != key_of(b)
    assert key_of({"a": 1, "b": 2}) != key_of({"b": 2, "a": 1})  # order can matter
    assert key_of([1, 2]) != key_of((1, 2))
    assert key_of(1) != key_of(True) and key_of(1) != key_of(1.0)
    assert key_of(_Color.RED) == key_of(_Color.RED) != key_of(1)
    p = _Plain([1])
    k = key_of(p)
    p.n.append(2)  # a plain object is keyed by its attributes, not its identity
    assert key_of(p) != k and key_of(_Plain([1])) == k
    u = _Unhashable([1])
    k = key_of(u)
    assert key_of(_Unhashable([1])) == k != key_of(_Plain([1]))
    u.n.append(2)
    assert key_of(u) != k
    f = functools.partial(nnx.gelu, approximate=False)
    assert key_of(f) == key_of(functools.partial(nnx.gelu, approximate=False))
    assert key_of(nnx.relu) == key_of(nnx.relu) != key_of(nnx.gelu)
    assert key_of(jnp.float32) != key_of(jnp.bfloat16)


@pytest.mark.parametrize(
    "value",
    [
        np.ones(3),
        np.array(1.0),
        [np.ones(2)],
        _Outer(table={"w": np.ones(2)}),
    ],
)
def test_arrays_are_not_keyed(value):
    with pytest.raises(Unkeyable):
        key_of(value)


def test_cyclic_structure_is_not_keyed():
    loop: list = []
    loop.append(loop)
    with pytest.raises(Unkeyable):
        key_of(loop)


def test_key_of_a_realistic_config_costs_microseconds():
    @dataclasses.dataclass
    class Cfg:
        stage_sizes: list = dataclasses.field(default_factory=lambda: [3, 4, 6, 3])
        widths: list = dataclasses.field(default_factory=lambda: [64, 128, 256, 512])
        layer_types: list = dataclasses.field(
            default_factory=lambda: ["attn", "mlp"] * 4
        )
        inner: _Inner = dataclasses.field(default_factory=_Inner)
        act: _Color = _Color.RED
        dtype: object = jnp.float32

    for i in range(24):  # 30 fields in all
        Cfg = dataclasses.make_dataclass(
            "Cfg", [(f"f{i}", float, 0.5 * i)], bases=(Cfg,)
        )
    cfg = Cfg()
    n = 2000
    per_call = min(timeit.repeat(lambda: key_of(cfg), number=n, repeat=3)) / n
    assert per_call < 100e-6, per_call  # a few microseconds; generous on a busy CI
