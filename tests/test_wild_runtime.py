"""NNX code as it is written in the wild, through generated wrappers, against pure NNX.

Stacked layers (``nnx.split_rngs`` + ``nnx.vmap`` built, ``nnx.scan`` /
``nnx.fori_loop`` / ``nnx.remat`` run), modules that keep their ``Rngs`` and
draw streams at call time, state created by methods after construction
(``init_cache``, lazy parameters) and Linen parts inside NNX (``ToNNX``).

Every reference is a pure NNX module built directly from
``tests/fixtures/wildnnx/models.py``, with the wrapper's Linen variables copied
in leaf by leaf and its rng streams seeded as the runtime documents (the first
draw of a stream is Linen's ``make_rng(tag)``; stacked streams get
``split(make_rng(tag), depth)``) -- keys computed by a Linen probe module, not by
nnxgen.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.nnx import bridge

from nnxgen import runtime as rt
from tests.fixtures.wildnnx import models as M
from tests.test_numerics import linen_fold_data, probe_keys

KEY = jax.random.key(0)
DIM, DEPTH = 4, 3
_COLLECTION_OF = ((nnx.BatchStat, "batch_stats"), (nnx.Cache, "cache"), (nnx.Param, "params"))


@pytest.fixture(scope="module")
def W(wrap):
    return wrap("tests.fixtures.wildnnx.models")


def _x(*shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def _get(tree, path):
    for k in path:
        tree = tree[str(k)] if isinstance(k, int) and str(k) in tree else tree[k]
    return tree


def load(module: nnx.Module, variables) -> nnx.Module:
    """Copy Linen ``variables`` into ``module``; every leaf must be used exactly once."""
    used = 0
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.RngState))):
        if not isinstance(var, nnx.Variable):  # raw array state, as the bridge files it
            np.testing.assert_array_equal(_get(variables["ArrayImpl"], path), var)
            used += 1
            continue
        col = next(c for t, c in _COLLECTION_OF if isinstance(var, t))
        value = _get(variables[col], path)
        assert jnp.shape(value) == jnp.shape(var.get_value()), (col, path)
        var.set_value(jnp.asarray(value))
        used += 1
    assert used == len(jax.tree_util.tree_leaves(dict(variables)))
    return module


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def differ(a, b):
    assert not np.allclose(np.asarray(a), np.asarray(b))


def seed_stacked(stream: nnx.RngStream, key, depth: int, nth: int = 1) -> None:
    """A stacked stream as the runtime seeds it: every layer holds Linen's key,
    layer ``i`` starts at count ``h + i * 2**16`` (``h``: the fold data of the
    ``nth`` ``make_rng``), so layer 0's first draw *is* ``make_rng``."""
    h = linen_fold_data(nth)
    stream.key.set_value(jnp.broadcast_to(key, (depth,)))
    stream.count.set_value(
        jnp.asarray([(h + i * 2**16) % 2**32 for i in range(depth)], jnp.uint32)
    )
    (first,) = probe_keys({"t": key}, {"t": nth})["t"][-1:]
    layer0 = jax.random.fold_in(stream.key[...][0], stream.count[...][0])
    assert jnp.array_equal(jax.random.key_data(layer0), jax.random.key_data(first))


def hlo_op_count(compiled_text: str) -> int:
    return len(re.findall(r"^\s+(?:ROOT )?%?[\w.\-]+ = ", compiled_text, re.M))


# ---------------------------------------------------------------------------
# 1. Stacked layers.


def _scanned_reference(variables, train: bool, dropout_key=None) -> M.ScannedStack:
    ref = load(M.ScannedStack(DIM, DEPTH, rngs=nnx.Rngs(params=7, dropout=8)), variables)
    if train:
        ref.train()
        seed_stacked(ref.blocks.dropout.rngs, dropout_key, DEPTH)
    else:
        ref.eval()
    return ref


@pytest.fixture(scope="module")
def scanned(W):
    model = W.ScannedStack(dim=DIM, depth=DEPTH)
    x = _x(2, DIM)
    return model, model.init(KEY, x, train=False), x


def test_scanned_stack_layout_is_stacked_and_equals_the_bridge(scanned):
    model, variables, x = scanned
    assert variables["params"]["blocks"]["linear"]["kernel"].shape == (DEPTH, DIM, DIM)
    ref_vars = bridge.to_linen(M.ScannedStack, DIM, DEPTH).init(
        {"params": KEY, "dropout": KEY}, x
    )
    assert jax.tree.map(jnp.shape, ref_vars) == jax.tree.map(jnp.shape, variables)
    # the initial values are those of pure NNX built with the params key that
    # the wrapper's constructor gets: Linen's make_rng('params')
    (params_key,) = probe_keys({"params": KEY}, {"params": 1})["params"]
    ref = M.ScannedStack(DIM, DEPTH, rngs=nnx.Rngs(params=params_key, dropout=0))
    close(ref.blocks.linear.kernel[...], variables["params"]["blocks"]["linear"]["kernel"])


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("method", ["__call__", "remat_forward"])
def test_scanned_stack_eval_equals_pure_nnx(scanned, method, jit):
    model, variables, x = scanned

    def f(v, x):
        return model.apply(v, x, method=method, train=False)

    y = (jax.jit(f) if jit else f)(variables, x)
    close(y, getattr(_scanned_reference(variables, train=False), method)(x))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_scanned_stack_train_dropout_follows_the_key(scanned, jit):
    model, variables, x = scanned

    def f(v, x, k):
        return model.apply(v, x, train=True, rngs={"dropout": k})

    f = jax.jit(f) if jit else f
    k1, k2 = jax.random.key(11), jax.random.key(12)
    y1 = f(variables, x, k1)
    close(y1, _scanned_reference(variables, True, k1)(x))
    close(f(variables, x, k1), y1)
    differ(f(variables, x, k2), y1)
    with pytest.raises(rt.NnxgenError, match="rng stream 'dropout'"):
        model.apply(variables, x, train=True)


def test_scanned_stack_compiles_to_pure_nnx_program(scanned):
    """Same optimized HLO op count as pure NNX, and the scan stays a loop."""
    model, variables, x = scanned
    ref = _scanned_reference(variables, train=False)
    graphdef, state = nnx.split(ref)
    pure = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, x).compile()
    ours = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).compile()
    assert "while" in ours.as_text()
    assert hlo_op_count(ours.as_text()) == hlo_op_count(pure.as_text())


def test_guide_stack_vmapped_init_scanned_call(W):
    """The flax guide's form: ``@nnx.vmap`` on ``__init__``, ``@nnx.scan`` on ``__call__``."""
    model = W.GuideStack(dim=DIM)
    x = _x(2, DIM)
    variables = model.init(KEY, x, train=False)
    assert variables["batch_stats"]["bn"]["mean"].shape == (3, DIM)
    ref = load(M.GuideStack(DIM, rngs=nnx.Rngs(params=1, dropout=2)), variables)
    ref.eval()
    close(model.apply(variables, x, train=False), ref(x))
    # train: batch statistics of every layer are updated as in pure NNX
    k = jax.random.key(5)
    y, updates = model.apply(
        variables, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"]
    )
    ref.train()
    seed_stacked(ref.dropout.rngs, k, 3)
    close(y, ref(x))
    close(updates["batch_stats"]["bn"]["mean"], ref.bn.mean[...])


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_fori_loop_stack(W, jit):
    model = W.ForiStack(dim=DIM, steps=3)
    x = _x(2, DIM)
    variables = model.init(KEY, x, train=False)
    ref = load(M.ForiStack(DIM, 3, rngs=nnx.Rngs(params=1, dropout=2)), variables)
    apply = jax.jit(model.apply, static_argnames="train") if jit else model.apply
    ref.eval()
    close(apply(variables, x, train=False), ref(x))
    k = jax.random.key(3)
    ref.train()
    ref.block.dropout.rngs.key.set_value(k)
    ref.block.dropout.rngs.count.set_value(jnp.uint32(linen_fold_data(1)))
    y = model.apply(variables, x, train=True, rngs={"dropout": k})
    close(y, ref(x))


# ---------------------------------------------------------------------------
# 2. Rng streams drawn only at call time.


@pytest.fixture(scope="module")
def droppath(W):
    model = W.DropPathNet(dim=DIM)
    x = _x(8, DIM)
    return model, model.init(KEY, x, train=False), x


def _droppath_reference(variables, stream: str, key) -> M.DropPathNet:
    """Pure NNX whose kept ``Rngs`` draw ``stream`` as the wrapper serves it.

    Each kept ``Rngs`` lacking the stream gets one ``make_rng(stream)``, in
    state order: ``drop_path/rngs`` (1st), then ``noise_rngs`` (2nd).
    """
    ref = load(M.DropPathNet(DIM, rngs=nnx.Rngs(params=1, **{stream: 2})), variables)
    target, nth = (ref.drop_path.rngs, 1) if stream == "dropout" else (ref.noise_rngs, 2)
    getattr(target, stream).key.set_value(key)
    getattr(target, stream).count.set_value(jnp.uint32(linen_fold_data(nth)))
    return ref


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_stored_rngs_drawn_at_call_time(droppath, jit):
    model, variables, x = droppath

    def f(v, x, k):
        return model.apply(v, x, train=True, rngs={"dropout": k})

    f = jax.jit(f) if jit else f
    k1, k2 = jax.random.key(21), jax.random.key(22)
    y1 = f(variables, x, k1)
    ref = _droppath_reference(variables, "dropout", k1)
    ref.train()
    close(y1, ref(x))
    close(f(variables, x, k1), y1)
    differ(f(variables, x, k2), y1)
    # eval: no draw, no rng needed
    ref.eval()
    close(model.apply(variables, x, train=False), ref(x))


def test_stored_rngs_missing_stream_in_training_names_it(droppath):
    model, variables, x = droppath
    with pytest.raises(rt.NnxgenError, match=r"rng stream 'dropout' in training.*rngs=\{'dropout'"):
        model.apply(variables, x, train=True)


def test_forked_rngs_serve_any_stream(droppath):
    """``self.noise_rngs = rngs.fork()`` + ``self.noise_rngs.noise()`` (VAE-style)."""
    model, variables, x = droppath
    k = jax.random.key(31)
    y = model.apply(variables, x, method="sample", train=True, rngs={"noise": k})
    close(y, _droppath_reference(variables, "noise", k).sample(x))
    differ(model.apply(variables, x, method="sample", train=True, rngs={"noise": KEY}), y)


# ---------------------------------------------------------------------------
# 3. State created by a method after construction.


@pytest.fixture(scope="module")
def decoder(W):
    model = W.CachedDecoder(dim=DIM, heads=2)
    return model, model.init(KEY, 2, 5, method="init_cache")


def test_init_cache_variables(decoder):
    _, variables = decoder
    assert set(variables) == {"params", "cache"}
    assert variables["cache"]["attn"]["cached_key"].shape == (2, 5, 2, 2)
    assert set(variables["cache"]) == {"attn", "steps"}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_cached_decode_steps_equal_pure_nnx(decoder, jit):
    model, variables = decoder
    ref = M.CachedDecoder(DIM, 2, rngs=nnx.Rngs(0))
    ref.init_cache(2, 5)
    load(ref, variables)

    def step(v, x_t):
        return model.apply(v, x_t, train=False, mutable=["cache"])

    step = jax.jit(step) if jit else step
    for t in range(5):
        x_t = _x(2, 1, DIM, seed=t)
        y, updates = step(variables, x_t)
        close(y, ref(x_t))
        variables = {**variables, **updates}
        close(updates["cache"]["attn"]["cached_value"], ref.attn.cached_value[...])
        assert int(updates["cache"]["attn"]["cache_index"]) == t + 1
        assert int(updates["cache"]["steps"]) == t + 1


def test_cache_variables_that_do_not_belong_are_errors(decoder):
    model, variables = decoder
    x_t = _x(2, 1, DIM)
    bad = {**variables, "cache": {**variables["cache"], "nope": {"x": jnp.ones(2)}}}
    with pytest.raises(rt.NnxgenError, match="unknown variables cache/nope/x"):
        model.apply(bad, x_t, train=False, mutable=["cache"])
    clash = {**variables, "cache": {**variables["cache"], "out": jnp.ones(2)}}
    with pytest.raises(rt.NnxgenError, match="unknown variables cache/out"):
        model.apply(clash, x_t, train=False, mutable=["cache"])
    with pytest.raises(rt.NnxgenError, match="unknown variable collection 'kv'"):
        model.apply({**variables, "kv": {"a": jnp.ones(1)}}, x_t, train=False)


def test_lazily_created_parameter(W):
    model = W.LazyHead(dout=3)
    x = _x(2, DIM)
    variables = model.init(KEY, x, train=False)
    assert variables["params"]["w"].shape == (DIM, 3)
    ref = M.LazyHead(3, rngs=nnx.Rngs(0))
    ref(x)
    load(ref, variables)
    close(model.apply(variables, x, train=False), ref(x))
    close(jax.jit(lambda v: model.apply(v, x, train=False))(variables), ref(x))


# ---------------------------------------------------------------------------
# 4. Linen parts inside NNX.


def test_linen_part_inside_nnx(W):
    model = W.WithLinenPart(din=DIM, dout=3)
    x = _x(2, DIM)
    variables = model.init(KEY, x, train=False)
    ref_vars = bridge.to_linen(M.WithLinenPart, DIM, 3).init(KEY, x)
    assert jax.tree.map(jnp.shape, ref_vars) == jax.tree.map(jnp.shape, variables)
    ref = load(M.WithLinenPart(DIM, 3, rngs=nnx.Rngs(0)), variables)
    for train in (False, True):
        close(model.apply(variables, x, train=train), ref(x))
    close(jax.jit(lambda v: model.apply(v, x, train=True))(variables), ref(x), tol=1e-5)
    # gradients flow into the Linen part's parameters
    g = jax.grad(lambda v: model.apply(v, x, train=False).sum())(variables)
    assert float(jnp.abs(g["params"]["dense"]["kernel"]).sum()) > 0


# ---------------------------------------------------------------------------
# Constructors that cannot be traced abstractly.


def test_constructor_needing_concrete_values(W):
    """``np.asarray`` of a computed array in ``__init__`` (bijx's coupling masks)."""
    model = W.MaskedLinear(dim=DIM)
    x = _x(2, DIM)
    variables = model.init(KEY, x, train=False)
    ref = load(M.MaskedLinear(DIM, rngs=nnx.Rngs(0)), variables)
    close(model.apply(variables, x, train=False), ref(x))
    close(jax.jit(lambda v: model.apply(v, x, train=False))(variables), ref(x))


def test_rngs_parameter_of_another_name(W):
    """``rng: nnx.Rngs`` is filled by the runtime, not a field; its ``default``
    stream is served from Linen's ``default`` rng."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(W.NoisyHead)} - {"parent", "name"}
    assert fields == {"dim", "scale"}
    model = W.NoisyHead(dim=DIM)
    x = _x(2, DIM)
    variables = model.init(KEY, x, train=False)
    k = jax.random.key(41)
    y = model.apply(variables, x, train=True, rngs={"default": k})
    ref = load(M.NoisyHead(nnx.Rngs(default=1), DIM), variables)
    ref.rng.default.key.set_value(k)
    ref.rng.default.count.set_value(jnp.uint32(linen_fold_data(1)))
    close(y, ref(x))
    differ(model.apply(variables, x, train=True, rngs={"default": KEY}), y)
    with pytest.raises(rt.NnxgenError, match="rng stream 'default'"):
        model.apply(variables, x, train=True)


def test_inspect_builds_stacked_layers():
    from tests.helpers import run_cli

    res = run_cli("inspect", "tests.fixtures.wildnnx.models:ScannedStack",
                  "--arg", "dim=4", "--arg", "depth=3")
    assert res.returncode == 0, res.stderr
    assert "blocks/linear/kernel" in res.stdout and "(3, 4, 4)" in res.stdout
