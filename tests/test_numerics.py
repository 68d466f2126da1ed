"""Numerical equivalence of generated Linen wrappers and pure Flax NNX modules.

Every comparison here builds its reference **independently of nnxgen's
runtime**: the NNX class is constructed directly with ``nnx.Rngs``, the Linen
variables are copied into it leaf by leaf, and its rng streams are seeded with
(key, count) pairs whose first draw equals the key a tiny Linen probe module
gets from ``make_rng`` (Linen's ``make_rng`` depends only on the rng, the module
path and a per-module call counter, and a top-level wrapper has the root path,
just like the probe). ``nnxgen.runtime.to_nnx`` is then
cross-checked against that independent construction.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx
from flax.nnx import bridge

from nnxgen import runtime as rt

RTOL = 1e-6
ATOL = 1e-6

# Which Linen collection holds each NNX variable type (written out here, not taken
# from nnxgen, so that the reference does not share code with the runtime).
_COLLECTION_OF = ((nnx.BatchStat, "batch_stats"), (nnx.Param, "params"))

# ---------------------------------------------------------------------------
# Reference helpers (no nnxgen code involved).


class _Probe(nn.Module):
    """Calls ``make_rng(tag)`` ``counts[tag]`` times at the top level, tags sorted."""

    counts: tuple[tuple[str, int], ...]

    def __call__(self) -> dict[str, list[jax.Array]]:
        return {tag: [self.make_rng(tag) for _ in range(n)] for tag, n in self.counts}


def probe_keys(
    rngs: Mapping[str, jax.Array], counts: Mapping[str, int]
) -> dict[str, list[jax.Array]]:
    """The keys a top-level Linen module gets from ``make_rng`` under ``rngs``."""
    counts = {t: n for t, n in counts.items() if t in rngs}
    keys: Any = _Probe(tuple(sorted(counts.items()))).apply({}, rngs=dict(rngs))
    return keys


def _node(module: Any, path) -> Any:
    for k in path:
        module = module[k] if isinstance(k, int) else getattr(module, k)
    return module


def _lookup(tree: Mapping, path) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def rng_streams(module: nnx.Module) -> list[tuple[tuple, nnx.RngStream]]:
    """(path, stream) for every RngStream, in ``nnx.to_flat_state`` order."""
    return [
        (tuple(path[:-1]), _node(module, path[:-1]))
        for path, var in nnx.to_flat_state(nnx.state(module))
        if isinstance(var, nnx.RngKey)
    ]


def stream_tags(module: nnx.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, stream in rng_streams(module):
        counts[stream.tag] = counts.get(stream.tag, 0) + 1
    return counts


def load_variables(module: nnx.Module, variables: Mapping[str, Any]) -> None:
    """Copy Linen ``variables`` into ``module`` (every leaf must be used exactly once)."""
    used = 0
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.RngState))):
        col = next(c for t, c in _COLLECTION_OF if isinstance(var, t))
        value = _lookup(variables[col], path)
        assert jnp.shape(value) == jnp.shape(var.get_value()), (col, path)
        var.set_value(jnp.asarray(value))
        used += 1
    assert used == len(jax.tree_util.tree_leaves(dict(variables))), (
        "the Linen variables hold leaves the NNX module does not have"
    )


def linen_fold_data(counter: int) -> int:
    """The uint32 Linen folds into a top-level rng for its ``counter``-th ``make_rng``."""
    m = hashlib.sha1()
    if flax.config.flax_fix_rng_separator:
        m.update(b"\00")
    m.update(counter.to_bytes((counter.bit_length() + 7) // 8, byteorder="big"))
    return int.from_bytes(m.digest()[:4], byteorder="big")


def seed_streams(module: nnx.Module, rngs: Mapping[str, jax.Array] | None) -> None:
    """Stream i of tag t (state order) draws the i-th top-level ``make_rng(t)`` first.

    NNX's ``RngStream`` draws ``fold_in(key, count)``; Linen's ``make_rng`` is
    ``fold_in(rng, h)``. So stream i gets ``key = rngs[t]`` and ``count = h_i``,
    checked here against a Linen probe module.
    """
    if not rngs:
        return
    keys = probe_keys(rngs, stream_tags(module))
    taken: dict[str, int] = {}
    for _, stream in rng_streams(module):
        if stream.tag not in keys:
            continue
        i = taken.get(stream.tag, 0)
        taken[stream.tag] = i + 1
        count = jnp.uint32(linen_fold_data(i + 1))
        first = jax.random.fold_in(rngs[stream.tag], count)
        assert jnp.array_equal(
            jax.random.key_data(first), jax.random.key_data(keys[stream.tag][i])
        ), "the reference's first draw must equal Linen's make_rng"
        stream.key.set_value(rngs[stream.tag])
        stream.count.set_value(count)


def assert_close(a, b, *, rtol=RTOL, atol=ATOL):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        if jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(
                np.asarray(x), np.asarray(y), rtol=rtol, atol=atol
            )


def flat_state(module: nnx.Module) -> dict[tuple, Any]:
    return {tuple(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(module))}


def layout(variables) -> Any:
    return jax.tree_util.tree_structure(jax.tree.map(jnp.shape, dict(variables)))


# ---------------------------------------------------------------------------
# Cases.


def _x(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    wrapper: Callable[[Any], nn.Module]  # wrap -> Linen wrapper instance
    nnx_class: Callable[[], type]  # the NNX class (for the bridge)
    nnx_args: Callable[[nnx.Rngs], tuple[tuple, dict]]  # rngs -> (args, kwargs)
    inputs: Callable[[], tuple]
    method: str = "__call__"
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dropout: bool = False  # uses a 'dropout' rng in train mode

    def build_nnx(self, seed: int = 123) -> nnx.Module:
        rngs = nnx.Rngs(params=seed, dropout=seed + 1)
        args, kwargs = self.nnx_args(rngs)
        return self.nnx_class()(*args, **kwargs, rngs=rngs)


def _ex(module: str, name: str) -> Callable[[], type]:
    def get():
        return getattr(
            __import__(f"generated_examples.{module}", fromlist=[name]), name
        )

    return get


def _linen_ex(module: str, name: str):
    return _ex(f"{module}_linen", name)


def _flax(name: str):
    return lambda: getattr(nnx, name)


def _wrapped(name: str):
    return lambda wrap: getattr(wrap(f"flax.nnx:{name}"), name)


def _encoder_wrapper(_wrap):
    mod = __import__("generated_examples.encoder_linen", fromlist=["Encoder"])
    return mod.Encoder(backbone=mod.Backbone(din=4), dout=3)


def _encoder_args(rngs):
    backbone = _ex("encoder", "Backbone")()(4, rngs=rngs)
    return (backbone, 3), {}


CASES = [
    Case(
        "MLP",
        lambda w: _linen_ex("mlp", "MLP")()(3, 5, 2, dropout_rate=0.5),
        _ex("mlp", "MLP"),
        lambda r: ((3, 5, 2), {"dropout_rate": 0.5}),
        lambda: (_x((6, 3)),),
        dropout=True,
    ),
    Case(
        "MLP.embed",
        lambda w: _linen_ex("mlp", "MLP")()(3, 5, 2, dropout_rate=0.5),
        _ex("mlp", "MLP"),
        lambda r: ((3, 5, 2), {"dropout_rate": 0.5}),
        lambda: (_x((6, 3)),),
        method="embed",
    ),
    Case(
        "CNN",
        lambda w: _linen_ex("cnn", "CNN")()(1, 3, (2, 4)),
        _ex("cnn", "CNN"),
        lambda r: ((1, 3, (2, 4)), {}),
        lambda: (_x((2, 6, 6, 1)),),
    ),
    Case(
        "TransformerBlock",
        lambda w: _linen_ex("transformer", "TransformerBlock")()(2, 4, 8, 0.5),
        _ex("transformer", "TransformerBlock"),
        lambda r: ((2, 4, 8, 0.5), {}),
        lambda: (_x((2, 3, 4)), jnp.tril(jnp.ones((1, 1, 3, 3), bool))),
        dropout=True,
    ),
    Case(
        "Encoder",
        _encoder_wrapper,
        _ex("encoder", "Encoder"),
        _encoder_args,
        lambda: (_x((3, 4)),),
    ),
    Case(
        "Linear",
        lambda w: _wrapped("Linear")(w)(3, 4),
        _flax("Linear"),
        lambda r: ((3, 4), {}),
        lambda: (_x((2, 3)),),
    ),
    Case(
        "Conv",
        lambda w: _wrapped("Conv")(w)(2, 3, kernel_size=(3,)),
        _flax("Conv"),
        lambda r: ((2, 3), {"kernel_size": (3,)}),
        lambda: (_x((2, 5, 2)),),
    ),
    Case(
        "Embed",
        lambda w: _wrapped("Embed")(w)(5, 3),
        _flax("Embed"),
        lambda r: ((5, 3), {}),
        lambda: (jnp.array([[0, 4, 2], [1, 1, 3]]),),
    ),
    Case(
        "Embed.attend",
        lambda w: _wrapped("Embed")(w)(5, 3),
        _flax("Embed"),
        lambda r: ((5, 3), {}),
        lambda: (_x((2, 3)),),
        method="attend",
    ),
    Case(
        "BatchNorm",
        lambda w: _wrapped("BatchNorm")(w)(4, momentum=0.8),
        _flax("BatchNorm"),
        lambda r: ((4,), {"momentum": 0.8}),
        lambda: (_x((5, 4)) * 2.0 + 1.0,),
    ),
    Case(
        "LayerNorm",
        lambda w: _wrapped("LayerNorm")(w)(4),
        _flax("LayerNorm"),
        lambda r: ((4,), {}),
        lambda: (_x((3, 4)) * 3.0,),
    ),
    Case(
        "Dropout",
        lambda w: _wrapped("Dropout")(w)(0.5),
        _flax("Dropout"),
        lambda r: ((0.5,), {}),
        lambda: (_x((4, 8)),),
        dropout=True,
    ),
    Case(
        "MultiHeadAttention",
        lambda w: _wrapped("MultiHeadAttention")(w)(
            num_heads=2, in_features=4, qkv_features=4, dropout_rate=0.5, decode=False
        ),
        _flax("MultiHeadAttention"),
        lambda r: (
            (),
            {
                "num_heads": 2,
                "in_features": 4,
                "qkv_features": 4,
                "dropout_rate": 0.5,
                "decode": False,
            },
        ),
        lambda: (_x((2, 3, 4)),),
        dropout=True,
    ),
]
CASE_BY_ID = {c.id: c for c in CASES}

K_INIT = jax.random.key(0)
K_DROP = jax.random.key(42)
K_DROP2 = jax.random.key(43)


@dataclasses.dataclass
class Built:
    case: Case
    model: nn.Module
    variables: Mapping[str, Any]
    inputs: tuple

    def apply(
        self, *, train: bool, rngs=None, mutable: Any = False, variables=None
    ) -> Any:
        return self.model.apply(
            self.variables if variables is None else variables,
            *self.inputs,
            **self.case.kwargs,
            method=self.case.method,
            train=train,
            rngs=rngs,
            mutable=mutable,
        )

    def reference(self, *, train: bool, rngs=None, variables=None) -> nnx.Module:
        """The pure NNX module, built and loaded without nnxgen."""
        module = self.case.build_nnx()
        load_variables(module, self.variables if variables is None else variables)
        seed_streams(module, rngs)
        module.train() if train else module.eval()
        return module

    def run_reference(self, module: nnx.Module):
        return getattr(module, self.case.method)(*self.inputs, **self.case.kwargs)


@pytest.fixture(scope="module")
def built(wrap) -> Callable[[str], Built]:
    cache: dict[str, Built] = {}

    def get(case_id: str) -> Built:
        if case_id not in cache:
            case = CASE_BY_ID[case_id]
            model = case.wrapper(wrap)
            inputs = case.inputs()
            # The one-key idiom, also for modules that build Dropout.
            variables = model.init(
                K_INIT, *inputs, **case.kwargs, method=case.method, train=False
            )
            cache[case_id] = Built(case, model, variables, inputs)
        return cache[case_id]

    return get


# The rngs passed to apply / to_nnx in the comparisons (also in eval mode, where
# they must not matter); applying without a dropout rng is tested separately.
RNGS = {"dropout": K_DROP}


def _mode_params():
    return [
        pytest.param(case.id, train, id=f"{case.id}-{'train' if train else 'eval'}")
        for case in CASES
        for train in (False, True)
    ]


# ---------------------------------------------------------------------------
# 1. Wrapper output == independently built pure NNX module.


@pytest.mark.parametrize("case_id,train", _mode_params())
def test_apply_matches_pure_nnx(built, case_id, train):
    b = built(case_id)
    rngs = RNGS
    mutable = ["batch_stats"] if "batch_stats" in b.variables else False
    out = b.apply(train=train, rngs=rngs, mutable=mutable)
    y, updates = out if mutable else (out, None)

    ref = b.reference(train=train, rngs=rngs)
    y_ref = b.run_reference(ref)
    assert_close(y, y_ref)
    if updates is not None:
        expected = {
            path: v.get_value()
            for path, v in nnx.to_flat_state(nnx.state(ref, nnx.BatchStat))
        }
        got = {path: _lookup(updates["batch_stats"], path) for path in expected}
        assert_close(got, expected)


@pytest.mark.parametrize("case_id,train", _mode_params())
def test_to_nnx_matches_independent_construction(built, case_id, train):
    b = built(case_id)
    rngs = RNGS
    live = rt.to_nnx(b.model, b.variables, train=train, rngs=rngs)
    ref = b.reference(train=train, rngs=rngs)
    assert type(live) is type(ref)
    # Same state, rng keys and counts included.
    assert_close(flat_state(live), flat_state(ref))
    # Same mode flags on every submodule.
    modules, ref_modules = list(nnx.iter_modules(live)), list(nnx.iter_modules(ref))
    assert [p for p, _ in modules] == [p for p, _ in ref_modules]
    for (path, m), (_, m_ref) in zip(modules, ref_modules):
        for attr in ("deterministic", "use_running_average"):
            assert getattr(m, attr, None) == getattr(m_ref, attr, None), (path, attr)
    # Same numbers when run.
    assert_close(b.run_reference(live), b.run_reference(ref))


@pytest.mark.parametrize("case_id", [c.id for c in CASES if c.dropout])
def test_to_nnx_train_output_matches_apply(built, case_id):
    """``to_nnx`` is documented as the module apply runs, rng seeding included."""
    b = built(case_id)
    rngs = {"dropout": K_DROP}
    mutable = ["batch_stats"] if "batch_stats" in b.variables else False
    out = b.apply(train=True, rngs=rngs, mutable=mutable)
    y = out[0] if mutable else out
    live = rt.to_nnx(b.model, b.variables, train=True, rngs=rngs)
    assert_close(y, b.run_reference(live))


def test_init_params_match_nnx_built_from_linen_params_key(built):
    """At init the NNX module is built from ``nnx.Rngs(params=make_rng('params'))``."""
    for case_id in ("Linear", "CNN", "Encoder", "LayerNorm"):
        b = built(case_id)
        (key,) = probe_keys({"params": K_INIT}, {"params": 1})["params"]
        args, kwargs = b.case.nnx_args(rngs := nnx.Rngs(params=key))
        ref = b.case.nnx_class()(*args, **kwargs, rngs=rngs)
        expected = {
            p: v.get_value() for p, v in nnx.to_flat_state(nnx.state(ref, nnx.Param))
        }
        got = {p: _lookup(b.variables["params"], p) for p in expected}
        assert_close(got, expected)
        assert len(jax.tree_util.tree_leaves(b.variables["params"])) == len(expected)


# ---------------------------------------------------------------------------
# 2. Batch statistics.


@pytest.mark.parametrize("case_id", ["MLP", "MLP.embed", "BatchNorm"])
def test_batch_stats_update_in_train_mode(built, case_id):
    b = built(case_id)
    rngs = {"dropout": K_DROP}
    _, upd = b.apply(train=True, rngs=rngs, mutable=["batch_stats"])
    ref = b.reference(train=True, rngs=rngs)
    b.run_reference(ref)
    bn = ref if isinstance(ref, nnx.BatchNorm) else ref.bn
    stats = (
        upd["batch_stats"]
        if isinstance(ref, nnx.BatchNorm)
        else upd["batch_stats"]["bn"]
    )
    assert_close(stats["mean"], bn.mean.get_value())
    assert_close(stats["var"], bn.var.get_value())
    # The update really moved the statistics (so this test can fail).
    init = b.variables["batch_stats"]
    init = init if isinstance(ref, nnx.BatchNorm) else init["bn"]
    assert not np.allclose(stats["mean"], init["mean"])
    assert not np.allclose(stats["var"], init["var"])

    # A second step continues from the updated statistics.
    v2 = {**b.variables, **upd}
    _, upd2 = b.apply(train=True, rngs=rngs, mutable=["batch_stats"], variables=v2)
    ref2 = b.reference(train=True, rngs=rngs, variables=v2)
    b.run_reference(ref2)
    bn2 = ref2 if isinstance(ref2, nnx.BatchNorm) else ref2.bn
    stats2 = (
        upd2["batch_stats"]
        if isinstance(ref2, nnx.BatchNorm)
        else upd2["batch_stats"]["bn"]
    )
    assert_close(stats2["mean"], bn2.mean.get_value())
    assert_close(stats2["var"], bn2.var.get_value())


@pytest.mark.parametrize("case_id", ["MLP", "BatchNorm"])
def test_batch_stats_unchanged_in_eval_mode(built, case_id):
    b = built(case_id)
    # Non-trivial statistics from one training step.
    _, upd = b.apply(train=True, rngs={"dropout": K_DROP}, mutable=["batch_stats"])
    v = {**b.variables, **upd}
    y, upd_eval = b.apply(train=False, variables=v, mutable=["batch_stats"])
    assert_close(upd_eval["batch_stats"], v["batch_stats"])
    # Eval normalises with the running statistics (not the batch's).
    ref = b.reference(train=False, variables=v)
    assert_close(y, b.run_reference(ref))
    y_train, _ = b.apply(
        train=True, rngs={"dropout": K_DROP}, variables=v, mutable=["batch_stats"]
    )
    assert not np.allclose(y, y_train)


@pytest.mark.parametrize("case_id", ["MLP", "BatchNorm"])
@pytest.mark.parametrize("train", [False, True])
def test_init_returns_initial_batch_stats(built, case_id, train):
    b = built(case_id)
    v = b.model.init({"params": K_INIT, "dropout": K_DROP}, *b.inputs, train=train)
    fresh = b.case.build_nnx()
    expected = {
        p: s.get_value() for p, s in nnx.to_flat_state(nnx.state(fresh, nnx.BatchStat))
    }
    got = {p: _lookup(v["batch_stats"], p) for p in expected}
    assert_close(got, expected)
    for p, val in got.items():
        want = jnp.zeros_like(val) if p[-1] == "mean" else jnp.ones_like(val)
        np.testing.assert_array_equal(np.asarray(val), np.asarray(want))


# ---------------------------------------------------------------------------
# 3. Dropout behaviour.


DROPOUT_IDS = [c.id for c in CASES if c.dropout]


def _train_out(b: Built, key):
    mutable = ["batch_stats"] if "batch_stats" in b.variables else False
    out = b.apply(train=True, rngs={"dropout": key}, mutable=mutable)
    return out[0] if mutable else out


@pytest.mark.parametrize("case_id", DROPOUT_IDS)
def test_dropout_key_determines_output(built, case_id):
    b = built(case_id)
    y1 = _train_out(b, K_DROP)
    y1_again = _train_out(b, K_DROP)
    y2 = _train_out(b, K_DROP2)
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y1_again))
    assert not np.allclose(y1, y2)


@pytest.mark.parametrize("case_id", DROPOUT_IDS)
def test_eval_mode_ignores_dropout_key(built, case_id):
    b = built(case_id)
    y1 = b.apply(train=False, rngs={"dropout": K_DROP})
    y2 = b.apply(train=False, rngs={"dropout": K_DROP2})
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    assert not np.allclose(y1, _train_out(b, K_DROP))


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_eval_apply_needs_no_rngs(built, case_id):
    b = built(case_id)
    y0 = b.apply(train=False)
    np.testing.assert_array_equal(
        np.asarray(y0), np.asarray(b.apply(train=False, rngs={"dropout": K_DROP}))
    )


def test_dropout_eval_is_identity_and_train_masks(built):
    b = built("Dropout")
    (x,) = b.inputs
    np.testing.assert_array_equal(np.asarray(b.apply(train=False)), np.asarray(x))
    y = np.asarray(_train_out(b, K_DROP))
    kept = y != 0
    # Every element is either dropped or scaled by 1 / (1 - rate).
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.5, rtol=RTOL)
    assert 0 < kept.sum() < kept.size


# ---------------------------------------------------------------------------
# 4. Variable layout == flax.nnx.bridge.to_linen's.


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_layout_matches_bridge(built, case_id):
    b = built(case_id)
    args, kwargs = b.case.nnx_args(nnx.Rngs(0))
    method = b.case.method

    def run_eval(module, *a, **kw):
        module.eval()
        return getattr(module, method)(*a, **kw)

    ref = bridge.to_linen(b.case.nnx_class(), *args, **kwargs).init(
        {"params": K_INIT, "dropout": K_DROP}, *b.inputs, nnx_method=run_eval
    )
    assert layout(b.variables) == layout(ref)
    assert jax.tree.map(jnp.shape, dict(b.variables)) == jax.tree.map(
        jnp.shape, dict(ref)
    )
    # Same dtypes too.
    assert jax.tree.map(lambda a: a.dtype, dict(b.variables)) == jax.tree.map(
        lambda a: a.dtype, dict(ref)
    )


# ---------------------------------------------------------------------------
# 5. Errors and the one-key init idiom.


@pytest.mark.parametrize("case_id", ["MLP", "TransformerBlock", "BatchNorm", "Dropout"])
def test_missing_mode_raises_mode_error(built, case_id):
    b = built(case_id)
    with pytest.raises(rt.ModeError, match="train="):
        b.model.apply(b.variables, *b.inputs, rngs={"dropout": K_DROP})
    # init needs no mode (Linen's init never updates batch statistics and its
    # discarded forward needs no dropout key): the variables of an eval init.
    for keys in ({"params": K_INIT, "dropout": K_DROP}, K_INIT):
        v = b.model.init(keys, *b.inputs)
        assert_close(v, b.model.init(keys, *b.inputs, train=False))


@pytest.mark.parametrize("case_id", DROPOUT_IDS)
def test_train_without_dropout_rng_raises(built, case_id):
    b = built(case_id)
    with pytest.raises(rt.NnxgenError, match="dropout"):
        _train_out_no_rng(b)


def _train_out_no_rng(b: Built):
    mutable = ["batch_stats"] if "batch_stats" in b.variables else False
    return b.apply(train=True, mutable=mutable)


def test_models_without_stochastic_layers_need_no_mode(built):
    for case_id in ("Linear", "CNN", "Encoder", "LayerNorm", "Embed"):
        b = built(case_id)
        y = b.model.apply(b.variables, *b.inputs)
        assert_close(y, b.apply(train=False))


@pytest.mark.parametrize("case_id", ["MLP", "TransformerBlock", "MultiHeadAttention"])
def test_one_key_init(built, case_id):
    b = built(case_id)  # was initialised with model.init(jax.random.key(0), ...)
    args, kwargs = b.case.nnx_args(nnx.Rngs(0))
    ref = bridge.to_linen(b.case.nnx_class(), *args, **kwargs).init(
        {"params": K_INIT, "dropout": K_DROP},
        *b.inputs,
        nnx_method=lambda m, *a: (m.eval(), m(*a))[1],
    )
    assert layout(b.variables) == layout(ref)
    # Deterministic in the key, and the key matters.
    again = b.model.init(jax.random.key(0), *b.inputs, train=False)
    other = b.model.init(jax.random.key(1), *b.inputs, train=False)
    assert_close(again, b.variables)
    assert not np.allclose(
        jax.tree_util.tree_leaves(other["params"])[-1],
        jax.tree_util.tree_leaves(b.variables["params"])[-1],
    )
    # The variables it returns work for training.
    y = _train_out(b, K_DROP)
    assert bool(jnp.all(jnp.isfinite(y)))


# ---------------------------------------------------------------------------
# 6. Hierarchical wrappers.


def test_encoder_params_nest_under_backbone(built):
    b = built("Encoder")
    params = b.variables["params"]
    assert set(b.variables) == {"params"}
    assert set(params) == {"backbone", "head"}
    assert set(params["backbone"]) == {"linear", "norm"}
    assert jnp.shape(params["backbone"]["linear"]["kernel"]) == (4, 8)
    assert jnp.shape(params["head"]["kernel"]) == (8, 3)


def test_encoder_matches_pure_nnx_with_same_state(built):
    from generated_examples.encoder import Backbone, Encoder

    b = built("Encoder")
    (x,) = b.inputs
    r = nnx.Rngs(7)
    ref = Encoder(Backbone(4, rngs=r), 3, rngs=r)
    load_variables(ref, b.variables)
    assert_close(b.model.apply(b.variables, x, train=False), ref(x))
    # The backbone inside the live module is the backbone of that state.
    live = rt.to_nnx(b.model, b.variables, train=False)
    assert isinstance(live.backbone, Backbone)
    assert_close(live.backbone(x), ref.backbone(x))
    # Changing only a backbone parameter changes the wrapper's output.
    v2 = jax.tree.map(lambda a: a, dict(b.variables))
    v2["params"] = {
        **v2["params"],
        "backbone": {
            **v2["params"]["backbone"],
            "linear": {
                **v2["params"]["backbone"]["linear"],
                # (one feature only: LayerNorm would cancel a uniform shift)
                "bias": v2["params"]["backbone"]["linear"]["bias"].at[0].add(1.0),
            },
        },
    }
    bias = ref.backbone.linear.bias
    assert bias is not None
    bias.set_value(bias.get_value().at[0].add(1.0))
    y2 = b.model.apply(v2, x, train=False)
    assert_close(y2, ref(x))
    assert not np.allclose(y2, b.model.apply(b.variables, x, train=False))
