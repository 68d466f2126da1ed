"""Linen's rules at apply, NNX's at init (issue 21, items 2, 4 and 5).

* A write into a collection the caller did not make mutable raises Linen's own
  ``ModifyScopeVariableError`` (nnxgen's subclass names the variable, the method
  and the fix), eager and under ``jax.jit``, inside NNX transforms too, where
  plain Linen raises for the same write; sown intermediates are dropped, as in
  Linen; calls that write nothing run as before.
* A repeated ``init`` never skips a forward pass that mutates its arguments
  (an ``nnx.Module`` KV cache passed as ``cache=c``).
* ``init(key, x)`` with no ``train=`` runs the method in eval mode, as Linen's
  init never updates batch statistics; ``apply`` without a mode still raises.
"""

from __future__ import annotations

from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from nnxgen import runtime as rt
from tests.fixtures.rulespkg import models as M

KEY = jax.random.key(0)
DROP = {"dropout": jax.random.key(1)}
X = jax.random.normal(jax.random.key(2), (3, 4))
X1 = X[:1]


@pytest.fixture(scope="module")
def W(wrap):
    return wrap("tests.fixtures.rulespkg.models")


def _eager_and_jit(fn):
    return [fn, jax.jit(fn)]


def _assert_same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


class LinenNorm(nn.Module):
    """The same write in plain Linen: BatchNorm in training."""

    @nn.compact
    def __call__(self, x, train: bool):
        return nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x))


# ---------------------------------------------------------------------------
# Item 2: immutable collections


def test_train_without_mutable_raises_as_linen(W):
    model = W.Norm(din=4, dout=4)
    v = model.init(KEY, X, train=False)
    plain = LinenNorm()
    pv = plain.init(KEY, X, train=False)
    with pytest.raises(flax.errors.ModifyScopeVariableError) as linen_err:
        plain.apply(pv, X, train=True)
    assert "batch_stats" in str(linen_err.value)
    for f in _eager_and_jit(lambda v, x: model.apply(v, x, train=True, rngs=DROP)):
        with pytest.raises(flax.errors.ModifyScopeVariableError) as err:
            f(v, x=X)
        assert isinstance(err.value, rt.ImmutableCollectionError)
        msg = str(err.value)
        assert 'collection "batch_stats" is immutable' in msg
        assert '"bn/mean"' in msg and "Norm.__call__" in msg
        assert 'mutable=["batch_stats"]' in msg
    # The fix named in the message works, and equals pure NNX.
    for f in _eager_and_jit(
        lambda v, x: model.apply(v, x, train=True, rngs=DROP, mutable=["batch_stats"])
    ):
        y, upd = f(v, X)
        ref = rt.to_nnx(model, v, train=True, rngs=DROP)
        _assert_same(y, ref(X))
        _assert_same(upd["batch_stats"]["bn"]["mean"], ref.bn.mean[...])
    # Eval writes nothing: no error, no mutable needed.
    for f in _eager_and_jit(lambda v, x: model.apply(v, x, train=False)):
        _assert_same(f(v, X), rt.to_nnx(model, v, train=False)(X))


def test_decode_step_without_mutable_cache_raises(W):
    model = W.Decoder(dim=4)
    v = model.init(KEY, X1, train=False)
    for f in _eager_and_jit(lambda v, x: model.apply(v, x, train=False)):
        with pytest.raises(rt.ImmutableCollectionError, match=r'"cache" is immutable'):
            f(v, X1)
    # mutable=['cache'] advances it, step after step, as pure NNX does.
    ref = rt.to_nnx(model, v, train=False)
    step = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["cache"]))
    for _ in range(3):
        y, upd = step(v, X1)
        v = {**v, **upd}
        _assert_same(y, ref(X1))
        _assert_same(v["cache"]["index"], ref.index[...])
    assert int(v["cache"]["index"]) == 3
    # A method that only reads the cache needs nothing mutable.
    _assert_same(model.apply(v, X1, method="peek", train=False), ref.peek(X1))


def test_cache_written_while_only_batch_stats_mutable_raises(W):
    model = W.Decoder(dim=4)
    v = model.init(KEY, X1, train=False)
    with pytest.raises(rt.ImmutableCollectionError, match='"index"'):
        model.apply(v, X1, train=False, mutable=["batch_stats"])


def test_param_written_in_apply_raises(W):
    model = W.SelfUpdating(dim=4)
    v = model.init(KEY, X, train=False)
    for f in _eager_and_jit(lambda v, x: model.apply(v, x, train=False)):
        with pytest.raises(rt.ImmutableCollectionError, match=r'"params" is immutable'):
            f(v, X)
    y, upd = model.apply(v, X, train=False, mutable=["params"])
    _assert_same(y, X * 0.5 * v["params"]["w"])
    _assert_same(upd["params"]["w"], 0.5 * v["params"]["w"])


def test_write_inside_nnx_transform_raises(W):
    model = W.ScannedNorm(dim=4)
    v = model.init(KEY, X, train=False)
    # nnx.scan hands every variable back: not a write. Eval runs as pure NNX.
    for f in _eager_and_jit(lambda v, x: model.apply(v, x, train=False)):
        _assert_same(f(v, X), rt.to_nnx(model, v, train=False)(X))
    for f in _eager_and_jit(lambda v, x: model.apply(v, x, train=True)):
        with pytest.raises(rt.ImmutableCollectionError, match=r'"batch_stats"'):
            f(v, X)
    y, upd = model.apply(v, X, train=True, mutable=["batch_stats"])
    ref = rt.to_nnx(model, v, train=True)
    _assert_same(y, ref(X))
    _assert_same(upd["batch_stats"], nnx.to_pure_dict(nnx.state(ref, nnx.BatchStat)))


def test_sown_values_dropped_when_immutable(W):
    model = W.Sower(dim=4)
    v = model.init(KEY, X, train=False)
    y = model.apply(v, X, train=False)  # no error, nothing returned
    y2, upd = model.apply(v, X, train=False, mutable=["intermediates"])
    _assert_same(y, y2)
    _assert_same(upd["intermediates"]["h"], (y,))


# ---------------------------------------------------------------------------
# Item 4: init never skips a forward that mutates its arguments


def test_repeated_init_advances_a_cache_argument(W):
    model = W.CachedLM(dim=4)
    cache = M.KVCache(4)
    for n in (1, 2, 3):
        model.init(KEY, X1, cache, train=False)
        assert int(cache.pos[...]) == n
    ref = M.KVCache(4)
    for _ in range(3):
        model.init_with_output(KEY, X1, ref, train=False)
    _assert_same(nnx.state(cache), nnx.state(ref))


def test_init_key_only_for_values_a_forward_cannot_mutate(W):
    from nnxgen.runtime._linen_wrapper.init import arg_key as _arg_key

    assert _arg_key(((X, 3, "a", None, jnp.float32), ())) is not None
    assert _arg_key(((X, (X, 2.0)), (("k", X),))) is not None
    for mutable_arg in (M.KVCache(4), [X], {"k": X}, nnx.Variable(X), object()):
        with pytest.raises(TypeError):
            _arg_key(((X, mutable_arg), {}))


# ---------------------------------------------------------------------------
# Item 5: init needs no mode


@pytest.mark.parametrize("name", ["Norm", "DropOnly", "ScannedNorm"])
def test_init_without_mode_equals_eval_init(W, name):
    cls = getattr(W, name)
    model = cls(4, 4) if name == "Norm" else cls(4)
    v = model.init(KEY, X)  # one key, no train=, no dropout key
    _assert_same(v, model.init(KEY, X, train=False))
    _assert_same(v, jax.jit(model.init)(KEY, X))
    y, _ = model.init_with_output(KEY, X)
    _assert_same(y, model.apply(v, X, train=False))
    with pytest.raises(rt.ModeError, match="train="):
        model.apply(v, X, rngs=DROP)


# ---------------------------------------------------------------------------
# The comparison rows for these rules (docs/comparison.md), as written.


def test_comparison_rows_as_written(W):
    from flax.nnx import bridge

    readme = (Path(__file__).parent.parent / "docs" / "comparison.md").read_text()
    assert (
        "| `init(key, x)` with Dropout / BatchNorm, no mode | works (eval-mode "
        "variables) | `No RngStream named 'dropout'` |" in readme
    )
    assert (
        '| training without `mutable=["batch_stats"]` | raises '
        "`ModifyScopeVariableError`, as Linen | statistics silently dropped |" in readme
    )
    # nnxgen: both rows
    model = W.Norm(din=4, dout=4)
    v = model.init(KEY, X)
    with pytest.raises(flax.errors.ModifyScopeVariableError):
        model.apply(v, X, train=True, rngs=DROP)
    # flax.nnx.bridge.to_linen: both rows
    dyn = bridge.to_linen(M.Norm, 4, 4)
    with pytest.raises(KeyError, match="No RngStream named 'dropout'"):
        dyn.init(KEY, X)
    bv = dyn.init({"params": KEY, **DROP}, X)
    y = dyn.apply(bv, X, rngs=DROP)  # trains (BatchNorm's default), no error
    _, upd = dyn.apply(bv, X, rngs=DROP, mutable=["batch_stats"])
    assert not np.allclose(
        upd["batch_stats"]["bn"]["mean"], bv["batch_stats"]["bn"]["mean"]
    )
    assert y.shape == (3, 4)


def test_comparison_row_dropout_without_rng_in_training(W):
    from flax.nnx import bridge

    rows = (Path(__file__).parent.parent / "docs" / "comparison.md").read_text()
    assert "| dropout without rng in training | clear error | same mask every call |" in rows
    model = W.DropOnly(dim=4)
    v = model.init(KEY, X)
    with pytest.raises(rt.NnxgenError, match="'dropout'"):
        model.apply(v, X, train=True)
    dyn = bridge.to_linen(M.DropOnly, 4)
    bv = dyn.init({"params": KEY, **DROP}, X)
    y1, y2 = dyn.apply(bv, X), dyn.apply(bv, X)
    assert np.array_equal(y1, y2) and bool((y1 == 0).any())  # one fixed mask
