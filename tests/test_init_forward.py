"""``init`` skips a forward pass it has already seen add no variable.

``Module.init`` discards the method's output, so a top-level ``init`` only
needs the forward pass for the variables it may add. Once an ``init`` of the
same wrapper, method, mode and argument shapes saw it add none, later
top-level ``init`` calls skip it. These tests count forward passes and check
that the variables are exactly those of an ``init`` that runs it.
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from nnxgen import runtime as rt

CALLS: collections.Counter[str] = collections.Counter()


class Counted(nnx.Module):
    """Linear + BatchNorm; counts its forward passes."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.bn = nnx.BatchNorm(dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        CALLS["call"] += 1
        return self.bn(self.linear(x))

    def embed(self, x: jax.Array) -> jax.Array:
        CALLS["embed"] += 1
        return self.linear(x)


class Plain(nnx.Module):
    """A Linear layer (no mode); counts its forward passes."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        CALLS["plain"] += 1
        return self.linear(x)


class Lazy(nnx.Module):
    """Creates a parameter in its first forward pass."""

    def __init__(self, din: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, din, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        CALLS["lazy"] += 1
        if not hasattr(self, "scale"):
            self.scale = nnx.Param(jnp.full(x.shape[-1:], 2.0))
        return self.linear(x) * self.scale


class Sows(nnx.Module):
    def __init__(self, din: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        CALLS["sows"] += 1
        y = self.linear(x)
        self.sow(nnx.Intermediate, "y", y)
        return y


KEY = jax.random.key(0)
X = jnp.arange(6.0).reshape(2, 3) / 6.0


@pytest.fixture(scope="module")
def w(wrap):
    return wrap(
        f"{__name__}:Counted",
        f"{__name__}:Plain",
        f"{__name__}:Lazy",
        f"{__name__}:Sows",
    )


@pytest.fixture(autouse=True)
def fresh_cache():
    rt.clear_cache()
    yield
    rt.clear_cache()


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def counted(fn, name="call"):
    before = CALLS[name]
    out = fn()
    return out, CALLS[name] - before


def eval_call(module, *args):
    module.eval()
    return module(*args)


@pytest.mark.parametrize("train", [True, False])
def test_repeated_init_skips_the_forward_and_returns_the_same_variables(
    w, train, monkeypatch
):
    model = w.Counted(3, 4)
    first, n1 = counted(lambda: model.init(KEY, X, train=train))
    again, n2 = counted(lambda: model.init(KEY, X, train=train))
    assert (n1, n2) == (1, 0)
    assert_same(again, first)
    # Equal to an init that runs the forward pass ...
    monkeypatch.setattr(rt, "INIT_SKIPS_KNOWN_FORWARD", False)
    ran, n3 = counted(lambda: model.init(KEY, X, train=train))
    assert n3 == 1
    assert_same(ran, first)
    # ... and to flax's bridge (same rng plumbing) run in eval mode, which
    # leaves the batch statistics as the constructor made them.
    bridged = nnx.bridge.to_linen(Counted, 3, 4).init(KEY, X, nnx_method=eval_call)
    assert_same(dict(first), dict(bridged))
    np.testing.assert_array_equal(first["batch_stats"]["bn"]["var"], np.ones(4))


def test_forward_runs_whenever_its_output_or_key_differs(w):
    model = w.Counted(3, 4)
    model.init(KEY, X, train=False)
    # The output is returned: init_with_output always runs the method.
    (y, _), n = counted(lambda: model.init_with_output(KEY, X, train=False))
    assert n == 1 and y.shape == (2, 4)
    # Another input shape, another mode, another method, another config.
    _, n = counted(lambda: model.init(KEY, jnp.ones((5, 3)), train=False))
    assert n == 1
    _, n = counted(lambda: model.init(KEY, X, train=True))
    assert n == 1
    _, n = counted(lambda: model.init(KEY, X, method="embed"), "embed")
    assert n == 1
    _, n = counted(lambda: model.init(KEY, X, method="embed"), "embed")
    assert n == 0
    _, n = counted(lambda: w.Counted(3, 5).init(KEY, X, train=False))
    assert n == 1


def test_a_parent_module_always_gets_the_output(w):
    class Parent(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(w.Counted(3, 4, name="child")(x, train=False))

    w.Counted(3, 4).init(KEY, X, train=False)  # the child's forward is known
    for _ in range(2):
        v, n = counted(lambda: Parent().init(KEY, X))
        assert n == 1
        assert v["params"]["Dense_0"]["kernel"].shape == (4, 2)


def test_a_subclass_method_calling_the_wrapper_gets_the_output(w):
    class Scaled(w.Counted):
        def __call__(self, x, *, train=None):
            y = super().__call__(x, train=train)
            self.sow("stats", "mean", y.mean())
            return y

    model = Scaled(3, 4)
    for _ in range(2):
        v, n = counted(lambda: model.init(KEY, X, train=False))
        assert n == 1
        assert "stats" in v


def test_eval_shape_then_jit_init_skips_the_second_trace(w):
    """What trainers do: shapes first (for shardings), then the jitted init."""
    model = w.Counted(3, 4)
    init = functools.partial(model.init, train=False)
    shapes, n1 = counted(lambda: jax.eval_shape(init, KEY, X))
    variables, n2 = counted(lambda: jax.jit(init)(KEY, X))
    assert (n1, n2) == (1, 0)
    assert jax.tree.map(lambda s: (s.shape, s.dtype), shapes) == jax.tree.map(
        lambda a: (a.shape, a.dtype), variables
    )
    assert_same(variables, model.init(KEY, X, train=False))


def test_a_forward_that_adds_variables_is_never_skipped(w):
    model = w.Lazy(3)
    for _ in range(3):
        v, n = counted(lambda: model.init(KEY, X), "lazy")
        assert n == 1
        np.testing.assert_array_equal(v["params"]["scale"], np.full(3, 2.0))


def test_a_sowing_forward_runs_whenever_what_it_sows_is_kept(w, monkeypatch):
    """Sown values are captured (``nnx.capture``, no deprecation warning); with
    ``intermediates`` immutable (Linen's init default) they are dropped, as in
    Linen, so a known forward may be skipped -- with equal variables; with
    intermediates mutable it always runs and they are returned."""
    model = w.Sows(3)
    first, n = counted(lambda: model.init(KEY, X), "sows")
    assert n == 1 and "intermediates" not in first
    again, _ = counted(lambda: model.init(KEY, X), "sows")
    jax.tree.map(np.testing.assert_array_equal, again, first)
    for _ in range(2):
        v, n = counted(lambda: model.init(KEY, X, mutable=True), "sows")
        assert n == 1
        assert len(v["intermediates"]["y"]) == 1
        assert v["intermediates"]["y"][0].shape == (2, 2)
    y, state = model.apply(first, X, train=False, mutable=["intermediates"])
    np.testing.assert_array_equal(state["intermediates"]["y"][0], y)


def test_clear_cache_forgets_known_forwards(w):
    model = w.Counted(3, 4)
    model.init(KEY, X, train=False)
    rt.clear_cache()
    _, n = counted(lambda: model.init(KEY, X, train=False))
    assert n == 1


def test_kauldron_is_training_property_init_skips_too(w):
    """Kauldron wraps ``Module.init`` to take ``is_training_property=``."""
    pytest.importorskip("kauldron.utils.train_property")
    model = w.Counted(3, 4)
    first, n1 = counted(lambda: model.init(KEY, X, is_training_property=True))
    again, n2 = counted(lambda: model.init(KEY, X, is_training_property=True))
    assert (n1, n2) == (1, 0)
    assert_same(again, first)
    assert_same(first, model.init(KEY, X, train=True))


@pytest.mark.parametrize("transform", ["vmap", "jit", "remat", "intercept"])
def test_linen_transforms_and_interceptors_get_the_output(w, transform):
    """A lifted transform (or an interceptor) sits between init and the method."""
    w.Plain(3, 4).init(KEY, X)  # the plain forward is known
    if transform == "vmap":
        cls = nn.vmap(
            w.Plain,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=0,
        )
        model, x = cls(3, 4), jnp.stack([X, X])
    elif transform == "jit":
        model, x = nn.jit(w.Plain)(3, 4), X
    elif transform == "remat":
        model, x = nn.remat(w.Plain)(3, 4), X
    else:
        model, x = w.Plain(3, 4), X

    def init():
        if transform == "intercept":
            seen = []

            def interceptor(next_fun, args, kwargs, context):
                out = next_fun(*args, **kwargs)
                seen.append(out.shape)
                return out

            with nn.intercept_methods(interceptor):
                v = model.init(KEY, x)
            assert seen == [(2, 4)]
            return v
        return model.init(KEY, x)

    first, n1 = counted(init, "plain")
    again, n2 = counted(init, "plain")
    # (nn.jit caches its trace: a second init does not call the method at all)
    assert n1 == 1 and n2 == (0 if transform == "jit" else 1)
    assert_same(again, first)
    if transform in ("remat", "intercept"):  # (vmap and jit lift the rngs)
        assert_same(first, w.Plain(3, 4).init(KEY, X))


def test_apply_layout_of_a_new_configuration_is_traced_not_built(w, monkeypatch):
    """``apply`` needs the module's layout (graphdef, paths) once per configuration:
    the constructor runs under ``jax.eval_shape`` (an abstract key, no initializer
    computes anything), not for real."""
    from nnxgen.runtime._linen_wrapper import layout_cache

    keys: list[object] = []
    construct = layout_cache.construct

    def spy(wrapper, rngs):
        keys.append(rngs["params"])
        return construct(wrapper, rngs)

    model = w.Plain(3, 5)
    variables = model.init(KEY, X)
    rt.clear_cache()
    monkeypatch.setattr(layout_cache, "construct", spy)
    y = model.apply(variables, X)
    assert keys and all(isinstance(k, jax.core.Tracer) for k in keys), keys
    kernel = variables["params"]["linear"]["kernel"]
    bias = variables["params"]["linear"]["bias"]
    np.testing.assert_allclose(np.asarray(y), np.asarray(X @ kernel + bias), rtol=1e-6)
