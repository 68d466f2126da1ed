"""The private flax / Kauldron details the runtime relies on (``nnxgen.runtime._compat``).

Each check fails loudly when a release changes the detail; each fallback is
exercised by taking the detail away and comparing the wrapper's numbers with
the fast path's.
"""

from __future__ import annotations

import importlib.util
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from nnxgen.runtime import _compat
from nnxgen.runtime._compat import rng_fold, sharding
from nnxgen.runtime._compat import streams as compat_streams

KAULDRON = importlib.util.find_spec("kauldron") is not None


@pytest.mark.parametrize("name", sorted(_compat.CHECKS))
def test_private_detail_still_behaves_as_relied_on(name):
    if name.startswith("kauldron") and not KAULDRON:
        pytest.skip("kauldron is not installed")
    assert _compat.CHECKS[name](), (
        f"flax/Kauldron changed the detail behind _compat.{name}: see its docstring; "
        "the runtime falls back to the slower path until _compat is updated"
    )


def test_no_private_detail_outside_compat():
    """Runtime modules outside _compat touch no private flax/jax/Kauldron name."""
    import pathlib
    import re

    import nnxgen.runtime as rt

    pattern = re.compile(
        r"\b(?:scope|nn\.module|variablelib|tp|lazy|_context|module_stack)\.\_[a-z]"
        r"|sys\._getframe|\b_get_stream\b|VariableTypeCache|rng_counters|\.suffix\b"
    )
    root = pathlib.Path(rt.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "_compat":
            continue
        hits = [
            f"{path.name}:{i}: {line.strip()}"
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)
        ]
        assert not hits, hits


@pytest.fixture(scope="module")
def mlp():
    from generated_examples.mlp_linen import MLP

    model = MLP(din=3, dmid=8, dout=2, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (4, 3))
    return model, model.init(jax.random.key(0), x, train=False), x


def _train(model, variables, x, key):
    return model.apply(
        variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )


def test_linen_fold_fallback_is_a_valid_stream(mlp, monkeypatch):
    """Without the detail, a stream starts at ``make_rng(tag)`` itself: other keys
    than the fast path's (whose first draw *is* ``make_rng``), but still a
    function of the caller's key, equal eager and jitted."""
    model, variables, x = mlp
    k1, k2 = jax.random.key(7), jax.random.key(8)
    fast = _train(model, variables, x, k1)
    assert rng_fold.linen_fold_works()
    monkeypatch.setattr(rng_fold, "linen_fold_works", lambda: False)
    slow = _train(model, variables, x, k1)
    assert not np.allclose(fast[0], slow[0])
    np.testing.assert_array_equal(_train(model, variables, x, k1)[0], slow[0])
    assert not np.allclose(_train(model, variables, x, k2)[0], slow[0])
    jitted = jax.jit(lambda v, k: _train(model, v, x, k))(variables, k1)
    np.testing.assert_allclose(jitted[0], slow[0], rtol=1e-6, atol=1e-6)


def test_linen_fold_matches_make_rng_in_submodules():
    """The fold data is right for a nested scope path and repeated draws."""

    class Inner(nn.Module):
        @nn.compact
        def __call__(self):
            folded = [_compat.linen_fold(self, "dropout") for _ in range(3)]
            return [jax.random.fold_in(k, jnp.uint32(d)) for k, d in folded]

    class InnerRef(nn.Module):
        @nn.compact
        def __call__(self):
            return [self.make_rng("dropout") for _ in range(3)]

    class Outer(nn.Module):
        ref: bool

        @nn.compact
        def __call__(self):
            return (InnerRef if self.ref else Inner)(name="block_0")()

    rngs = {"dropout": jax.random.key(5)}
    ours = Outer(False).apply({}, rngs=rngs)
    theirs = Outer(True).apply({}, rngs=rngs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))


def test_outside_linen_fallback_is_a_no_op(monkeypatch):
    monkeypatch.setattr(nn.module, "_context", types.SimpleNamespace())
    with _compat.outside_linen():
        pass
    assert not _compat.CHECKS["module_stack"]()


def test_interceptor_fallback_means_active(monkeypatch):
    assert not _compat.interceptors_active()
    monkeypatch.delattr(nn.module, "_global_interceptor_stack")
    assert _compat.interceptors_active()


@pytest.mark.skipif(not KAULDRON, reason="kauldron is not installed")
def test_kauldron_fallback_reads_the_public_property(monkeypatch):
    import kauldron.utils.train_property as tp

    for value in (True, False):
        with tp.set_train_property(value):
            assert _compat.kauldron_is_training() is value
    monkeypatch.setattr(tp, "_context", types.SimpleNamespace(is_training=True))
    assert _compat.kauldron_is_training() is True
    monkeypatch.undo()
    assert _compat.kauldron_is_training() is None


def test_registry():
    from flax import nnx

    assert _compat.collection_name(nnx.BatchStat) == "batch_stats"
    assert _compat.variable_type("params") is nnx.Param
    with pytest.raises(LookupError):
        _compat.variable_type("nnxgen-not-a-collection")


def _streams():
    from flax import nnx

    rngs = nnx.Rngs(params=3, dropout=4)
    rngs.dropout()  # counts that differ
    return rngs, [rngs.params, rngs.dropout]


def _drawn(keys):
    return [np.asarray(jax.random.key_data(k)) for k in keys]


@pytest.mark.parametrize("path", ["one dispatch", "fallback", "traced"])
def test_draw_streams_equals_each_streams_own_draw(path, monkeypatch):
    """``draw_streams`` gives the keys and counts of ``[s() for s in streams]``:
    in one jitted dispatch (eager), one by one where the detail check fails, and
    one by one inside a trace (where it must not touch tracers)."""
    ref_rngs, ref = _streams()
    expected = _drawn([s() for s in ref] + [s() for s in ref])
    rngs, streams = _streams()
    if path == "fallback":
        monkeypatch.setattr(compat_streams, "stream_draw_matches", lambda: False)
        monkeypatch.setattr(compat_streams, "_fold_all", None)  # would fail if used
    if path == "traced":
        from flax import nnx

        @nnx.jit
        def twice(rngs):
            s = [rngs.params, rngs.dropout]
            return _compat.draw_streams(s) + _compat.draw_streams(s)

        got = twice(rngs)
    else:
        got = _compat.draw_streams(streams) + _compat.draw_streams(streams)
    assert [a.tolist() for a in _drawn(got)] == [a.tolist() for a in expected]
    assert [int(s.count.get_value()) for s in streams] == [
        int(s.count.get_value()) for s in ref
    ]


@pytest.mark.parametrize("path", ["marked default", "fallback"])
def test_layout_needs_no_mesh_where_init_had_one(path, wrap, monkeypatch):
    """``layout_variables``: ``init`` under a (one-device) mesh with flax's eager
    sharding, ``apply`` outside it builds its layout without one. With the
    detail, the layout's variables carry the ``eager_sharding`` flax gave them
    (explicit ``False`` kept); in the fallback every one says False. The
    numbers are the same."""
    import collections

    from flax import nnx
    from jax.sharding import Mesh

    from nnxgen import runtime as rt
    from nnxgen.runtime._linen_wrapper import layout_cache

    model = wrap("tests.mesh_outside_check").Mixed(4)
    x = jnp.linspace(-1, 1, 8).reshape(2, 4)
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    monkeypatch.setattr(layout_cache, "CACHE", collections.OrderedDict())
    if path == "fallback":
        monkeypatch.setattr(sharding, "eager_default_kept", lambda: False)
    with nnx.use_eager_sharding(True):
        with jax.set_mesh(mesh):
            variables = model.init(jax.random.key(0), x)
        y = model.apply(variables, x)
        assert jnp.array_equal(jax.jit(model.apply)(variables, x), y)
        live = nnx.to_flat_state(nnx.state(rt.to_nnx(model, variables)))
    flags = {
        "/".join(map(str, p)): v.get_metadata().get("eager_sharding") for p, v in live
    }
    expected = {"w": path == "marked default", "u": False}
    assert flags == expected
    w, u = (np.asarray(nn.unbox(variables)["params"][k]) for k in ("w", "u"))
    assert np.allclose(y, np.asarray(x) @ w + u, atol=1e-6)
