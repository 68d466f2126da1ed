"""Linen -> NNX at run time: generated NNX wrappers of ``flax.linen`` layers and of
the Linen golden examples, against Linen's own ``apply`` and ``nnx.bridge.ToNNX``.

- every layer the issue names (Dense, Conv, Embed, LayerNorm, MultiHeadDotProductAttention,
  LSTMCell, LSTMCell under ``nn.RNN``; BatchNorm and Dropout in train and eval) wrapped
  straight from ``flax.linen``: the first call makes the layout ``ToNNX`` + ``lazy_init``
  makes for the same seed (paths, variable types, values, rng counts), and outputs equal
  ``Layer(...).apply`` on the wrapper's variables, call after call;
- a second method (``Embed.attend``, ``LSTMCell.initialize_carry``) runs on the stored
  variables; ``lazy_init`` of a second method adds what it needs and keeps what was
  trained (``ToNNX`` re-initialises);
- BatchNorm: ``.train()`` writes the new batch statistics back (equal to Linen's
  ``mutable=["batch_stats"]``), ``.eval()`` normalises with them; an explicit argument
  wins over the mode, a Linen field set at construction wins over both;
- Dropout / the setup-based MLP example in training: the keys are the wrapper's streams
  (reproduced from an identically seeded ``nnx.Rngs``), equal to ``ToNNX``; eval is the
  identity / deterministic;
- mode errors: a required mode argument with no mode set, and a Linen default of
  ``None`` that Linen rejects, both raise ``ModeError`` naming ``.train()`` / ``.eval()``
  and the argument; attention with ``dropout_rate=0`` needs no mode (as in Linen);
  ``nnx.view`` sets the mode without touching the original; ``lazy_init`` needs no
  mode (eval mode, the same variables) and leaves none set;
- bad input at run time (a Linen name that is an ``nnx.Module`` member, a wrong ``rngs``
  or module) is a one-line error, nothing half-stored; ``rngs=<int>`` / a key work;
- idioms of projects that keep Linen parts: openpi's ``init(self)`` method run by
  ``lazy_init`` (= ``ToNNX(...).lazy_init(method="init")``), and a decode cache
  (``decode=True`` attention) written back call by call, eager and under ``nnx.jit``;
  a MaxText-style decoder (``nn.scan(nn.remat(Layer))``, a ``layers`` partition axis):
  ToNNX's stacked layout and partition specs, Linen's numbers and gradients;
- a custom collection (flax's registered type, written back) and a sown one (the last
  call's values only).
"""

from __future__ import annotations

import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import nnxgen.runtime as rt
from generated_examples import linen_cnn, linen_mlp
from generated_examples.linen_cnn_nnx import CNN
from generated_examples.linen_mlp_nnx import MLP
from tests.linen_helpers import (
    assert_equal,
    assert_same_state,
    draw,
    flat_state,
    linen_vars,
)

LAYER_TARGETS = [
    "flax.linen:Dense", "flax.linen:Conv", "flax.linen:Embed", "flax.linen:BatchNorm",
    "flax.linen:LayerNorm", "flax.linen:Dropout", "flax.linen:MultiHeadDotProductAttention",
    "flax.linen:LSTMCell", "flax.linen:RNN",
]  # fmt: skip

X = jax.random.normal(jax.random.key(1), (4, 6))
X2 = jax.random.normal(jax.random.key(2), (4, 6)) * 2.0 + 1.0
IMG = jax.random.normal(jax.random.key(3), (2, 6, 6, 2))
TOK = jnp.array([[0, 3, 7], [9, 1, 1]])
SEQ = jax.random.normal(jax.random.key(4), (2, 5, 6))


@pytest.fixture(scope="module")
def layers(wrap):
    return wrap(*LAYER_TARGETS)


def _lstm_carry():
    return nn.LSTMCell(4).initialize_carry(jax.random.key(5), (2, 6))


#: name -> (constructor arguments, call arguments); built the same way for
#: the wrapper, ``flax.linen`` and ``ToNNX``.
CASES = {
    "Dense": (lambda: {"features": 3}, lambda: (X,)),
    "Conv": (lambda: {"features": 3, "kernel_size": (3, 3)}, lambda: (IMG,)),
    "Embed": (lambda: {"num_embeddings": 10, "features": 4}, lambda: (TOK,)),
    "LayerNorm": (dict, lambda: (X2,)),
    "MultiHeadDotProductAttention": (
        lambda: {"num_heads": 2, "qkv_features": 8},
        lambda: (SEQ,),
    ),
    "LSTMCell": (lambda: {"features": 4}, lambda: (_lstm_carry(), SEQ[:, 0])),
    "RNN": (lambda: {"cell": nn.LSTMCell(4)}, lambda: (SEQ,)),
}


# ---------------------------------------------------------------------------
# flax.linen layers, wrapped directly.


@pytest.mark.parametrize("name", list(CASES))
def test_layer_layout_is_tonnx_and_numbers_are_linen_apply(layers, name):
    kwargs, inputs = CASES[name]
    model = getattr(layers, name)(**kwargs(), rngs=nnx.Rngs(0))
    assert linen_vars(model) == {}  # nothing before the first call
    y = model(*inputs())
    ref = nnx.bridge.ToNNX(getattr(nn, name)(**kwargs()), rngs=nnx.Rngs(0))
    ref.lazy_init(*inputs())
    assert_same_state(model, ref)
    assert linen_vars(model)["params"]  # a layer with parameters
    linen = getattr(nn, name)(**kwargs())
    expected = linen.apply(linen_vars(model), *inputs())
    assert_equal(y, expected)
    assert_equal(model(*inputs()), expected)  # a later call: apply on the stored ones
    assert_equal(ref(*inputs()), expected)


def test_embed_attend_runs_on_the_stored_table(layers):
    model = layers.Embed(10, 4, rngs=nnx.Rngs(0))
    model(TOK)
    query = jax.random.normal(jax.random.key(6), (3, 4))
    got = model.attend(query)
    table = model.embedding.get_value()
    np.testing.assert_allclose(np.asarray(got), np.asarray(query @ table.T), rtol=1e-6)
    assert_equal(got, nn.Embed(10, 4).apply(linen_vars(model), query, method="attend"))


def test_lstm_initialize_carry_through_the_wrapper(layers):
    model = layers.LSTMCell(4, rngs=nnx.Rngs(0))
    carry = model.initialize_carry(jax.random.key(5), (2, 6))
    assert_equal(carry, _lstm_carry())
    assert linen_vars(model) == {}  # initialize_carry makes no variables
    (c, h), out = model(carry, SEQ[:, 0])
    ref = nn.LSTMCell(4).apply(linen_vars(model), carry, SEQ[:, 0])
    assert_equal(((c, h), out), ref)


def test_lazy_init_of_a_second_method_keeps_trained_parameters():
    model = MLP(5, 3, rngs=nnx.Rngs(0))
    model.eval()
    nnx.bridge.lazy_init(model, X)
    trained = jax.tree.map(lambda a: a + 1.0, nnx.state(model, nnx.Param))
    nnx.update(model, trained)
    before = flat_state(model)
    nnx.bridge.lazy_init(model.embed, X)  # a second method, under lazy_init
    after = flat_state(model)
    assert sorted(after) == sorted(before)
    for path, (kind, value) in before.items():
        if kind is nnx.Param:
            np.testing.assert_array_equal(after[path][1], value, err_msg=str(path))
    got = model.embed(X)
    expected = linen_mlp.MLP(5, 3).apply(linen_vars(model), X, False, method="embed")
    assert_equal(got, expected)
    # ToNNX re-initialises the parameters in the same situation
    ref = nnx.bridge.ToNNX(linen_mlp.MLP(5, 3), rngs=nnx.Rngs(0)).lazy_init(X, False)
    nnx.update(ref, trained)
    ref.lazy_init(X, False, method="embed")
    kernel = ("dense1", "kernel")
    assert not np.array_equal(flat_state(ref)[kernel][1], before[kernel][1])


# ---------------------------------------------------------------------------
# BatchNorm and Dropout: the mode, write-back and keys.


def test_batchnorm_train_writes_statistics_back_and_eval_uses_them(layers):
    model = layers.BatchNorm(momentum=0.8, rngs=nnx.Rngs(0))
    linen = nn.BatchNorm(momentum=0.8)
    model.train()
    model(X)  # the first call makes the variables (Linen's init updates nothing)
    init_vars = linen_vars(model)
    y = model(X2)
    y_ref, updates = linen.apply(
        init_vars, X2, use_running_average=False, mutable=["batch_stats"]
    )
    assert_equal(y, y_ref)
    assert_equal(linen_vars(model)["batch_stats"], updates["batch_stats"])
    assert not np.allclose(np.asarray(model.mean.get_value()), 0.0)
    model.eval()
    stats = linen_vars(model)
    y_eval = model(X)
    assert_equal(y_eval, linen.apply(stats, X, use_running_average=True))
    assert_equal(linen_vars(model), stats)  # eval changes nothing
    # an explicit argument wins over the mode
    model(X, use_running_average=False)
    assert not np.array_equal(
        np.asarray(model.mean.get_value()), np.asarray(stats["batch_stats"]["mean"])
    )


def test_batchnorm_field_wins_over_the_mode(layers):
    model = layers.BatchNorm(use_running_average=True, rngs=nnx.Rngs(0))
    model.train()
    model(X)
    stats = linen_vars(model)
    y = model(X2)
    assert_equal(linen_vars(model), stats)  # running averages: nothing updated
    assert_equal(y, nn.BatchNorm(use_running_average=True).apply(stats, X2))


def test_dropout_follows_the_mode_with_the_wrappers_keys(layers):
    model = layers.Dropout(0.5, rngs=nnx.Rngs(dropout=3))
    model.eval()
    assert_equal(model(X), X)
    model.train()
    first, second = model(X), model(X)
    keys = nnx.Rngs(dropout=3).fork()
    draw(keys)  # the eval call drew too
    for got in (first, second):
        expected = nn.Dropout(0.5).apply({}, X, deterministic=False, rngs=draw(keys))
        assert_equal(got, expected)
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    kept = np.asarray(first) != 0.0
    assert 0 < kept.sum() < kept.size  # some dropped, the rest scaled by 1 / (1 - rate)
    np.testing.assert_allclose(
        np.asarray(first)[kept], 2.0 * np.asarray(X)[kept], rtol=1e-6
    )
    ref = nnx.bridge.ToNNX(nn.Dropout(0.5), rngs=nnx.Rngs(dropout=3))
    ref(X, deterministic=True)
    assert_equal(ref(X, deterministic=False), first)


def test_setup_based_mlp_in_training_equals_linen_and_tonnx():
    seeds = {"params": 0, "dropout": 1}
    model = MLP(5, 3, dropout_rate=0.5, rngs=nnx.Rngs(**seeds))
    model.train()
    model(X)
    before = linen_vars(model)
    y = model(X2)
    keys = nnx.Rngs(**seeds).fork()
    draw(keys)  # the first call's keys
    y_ref, updates = linen_mlp.MLP(5, 3, dropout_rate=0.5).apply(
        before, X2, True, rngs=draw(keys), mutable=["batch_stats"]
    )
    assert_equal(y, y_ref)
    assert_equal(linen_vars(model)["batch_stats"], updates["batch_stats"])
    ref = nnx.bridge.ToNNX(
        linen_mlp.MLP(5, 3, dropout_rate=0.5), rngs=nnx.Rngs(**seeds)
    )
    ref.lazy_init(X, True)
    assert_equal(ref(X2, True, mutable=["batch_stats"]), y)
    model.eval()
    stats = linen_vars(model)
    assert_equal(model(X), linen_mlp.MLP(5, 3, dropout_rate=0.5).apply(stats, X, False))


# ---------------------------------------------------------------------------
# Mode errors and nnx.view.


def test_required_mode_argument_without_a_mode_is_a_mode_error():
    model = CNN(4, 3, rngs=nnx.Rngs(0))
    with pytest.raises(rt.ModeError) as err:
        model(IMG)
    msg = str(err.value)
    assert "CNN.__call__" in msg and "'use_running_average'" in msg
    assert "model.train() or model.eval()" in msg
    assert "nnx.view(model, use_running_average=...)" in msg
    assert linen_vars(model) == {}  # nothing half-made
    model.eval()
    y = model(IMG)
    expected = linen_cnn.CNN(4, 3).apply(linen_vars(model), IMG, True)
    assert_equal(y, expected)


@pytest.mark.parametrize(
    ("name", "kwargs", "arg"),
    [
        ("Dropout", {"rate": 0.5}, "deterministic"),
        ("BatchNorm", {}, "use_running_average"),
        (
            "MultiHeadDotProductAttention",
            {"num_heads": 2, "dropout_rate": 0.5},
            "deterministic",
        ),
    ],
)
def test_linen_none_default_rejected_by_linen_is_a_mode_error(
    layers, name, kwargs, arg
):
    model = getattr(layers, name)(**kwargs, rngs=nnx.Rngs(0))
    with pytest.raises(rt.ModeError, match=rf"'{arg}' follows the NNX mode") as err:
        model(SEQ)
    assert "model.train() or model.eval()" in str(err.value)
    assert isinstance(err.value.__cause__, ValueError)  # Linen's own error, chained
    model.eval()
    assert model(SEQ).shape == SEQ.shape


def test_attention_without_dropout_needs_no_mode(layers):
    model = layers.MultiHeadDotProductAttention(num_heads=2, rngs=nnx.Rngs(0))
    y = model(SEQ)
    linen = nn.MultiHeadDotProductAttention(num_heads=2)
    assert_equal(y, linen.apply(linen_vars(model), SEQ))


@pytest.mark.skipif(not hasattr(nnx, "view"), reason="nnx.view is newer than this flax")
def test_nnx_view_sets_the_mode_and_leaves_the_original():
    model = CNN(4, 3, rngs=nnx.Rngs(0))
    evaluating = nnx.view(model, use_running_average=True)
    y = evaluating(IMG)
    assert model.use_running_average is None  # the original keeps no mode
    with pytest.raises(rt.ModeError):
        CNN(4, 3, rngs=nnx.Rngs(0))(IMG)
    assert_equal(y, linen_cnn.CNN(4, 3).apply(linen_vars(evaluating), IMG, True))
    training = nnx.view(evaluating, use_running_average=False)
    before = linen_vars(training)["batch_stats"]
    training(IMG)
    assert not np.array_equal(
        np.asarray(jax.tree.leaves(linen_vars(training)["batch_stats"])[0]),
        np.asarray(jax.tree.leaves(before)[0]),
    )


# ---------------------------------------------------------------------------
# Bad input at run time: one-line errors naming the thing and the fix.


class _Clash(nn.Module):
    """A Linen submodule named like an ``nnx.Module`` member (``eval``)."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2, name="out")(nn.Dense(3, name="eval")(x))


class _ClashNNX(nnx.Module):
    """What the generator writes for ``_Clash`` (its runtime calls, by hand)."""

    def __init__(self, module=None, *, rngs: nnx.Rngs) -> None:
        rt.linen_init(self, _Clash() if module is None else module, rngs)

    def __call__(self, x):
        return rt.linen_call(self, "__call__", (x,), {})


def test_a_linen_name_that_is_an_nnx_member_is_an_error_and_nothing_is_stored():
    model = _ClashNNX(rngs=nnx.Rngs(0))
    with pytest.raises(rt.NnxgenError) as err:
        model(X)
    assert str(err.value) == (
        "_ClashNNX: the Linen module has a variable or submodule named 'eval', which is "
        "also a member of the NNX wrapper; rename it in the Linen module"
    )
    assert linen_vars(model) == {}  # not 'out' without 'eval'
    assert model.eval == nnx.Module.eval.__get__(model)  # the NNX method is intact


def test_rngs_and_module_arguments_are_checked():
    with pytest.raises(rt.NnxgenError) as err:
        CNN(4, 3, rngs="0")  # type: ignore[arg-type]
    assert (
        str(err.value)
        == "CNN(rngs=...) takes an nnx.Rngs (e.g. rngs=nnx.Rngs(0)), not str"
    )
    with pytest.raises(
        rt.NnxgenError, match="expected a flax.linen.Module to wrap, got int"
    ):
        _ClashNNX(3, rngs=nnx.Rngs(0))
    # an int seed works like nnx.Rngs(seed), a key as ToNNX takes one
    model = CNN(4, 3, rngs=0)  # type: ignore[arg-type]
    model.eval()
    model(IMG)
    ref = CNN(4, 3, rngs=nnx.Rngs(0))
    ref.eval()
    ref(IMG)
    assert_equal(linen_vars(model), linen_vars(ref))
    model = CNN(4, 3, rngs=jax.random.key(7))  # type: ignore[arg-type]
    nnx.bridge.lazy_init(model, IMG, use_running_average=True)
    tonnx = nnx.bridge.ToNNX(linen_cnn.CNN(4, 3), rngs=jax.random.key(7))
    tonnx.lazy_init(IMG, True)
    assert_same_state(model, tonnx)


# ---------------------------------------------------------------------------
# Idioms of projects that keep Linen parts: openpi's init method, decode caches.


@pytest.fixture(scope="module")
def linengen(wrap):
    """``get(module, cls)`` -> (the generated wrapper module of
    ``linengen.<module>:<cls>``, the Linen module), from ``tests/fixtures``."""
    from tests.helpers import ROOT

    fixtures = str(ROOT / "tests" / "fixtures")
    sys.path.insert(0, fixtures)

    def get(module: str, cls: str):
        target = f"linengen.{module}"
        return wrap(f"{target}:{cls}"), importlib.import_module(target)

    yield get
    sys.path.remove(fixtures)


def test_openpi_style_init_method_through_lazy_init(linengen):
    """openpi: ``llm = ToNNX(Gemma(...)); llm.lazy_init(rngs=rngs, method="init")``,
    then ``llm(..., method="embed")``; here ``lazy_init(model.init)`` and a typed
    ``model.embed(tokens)``."""
    wrapped, linen = linengen("openpi_style", "Module")
    model = wrapped.Module(width=8, vocab=16, rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(model.init)
    ref = nnx.bridge.ToNNX(linen.Module(width=8, vocab=16), rngs=nnx.Rngs(0))
    ref.lazy_init(method="init")
    assert_same_state(model, ref)
    assert set(linen_vars(model)["params"]) == {"embedder", "block"}
    emb = model.embed(TOK)
    assert_equal(emb, linen.Module(8, 16).apply(linen_vars(model), TOK, method="embed"))
    assert_equal(model(emb), ref(emb))


def test_decode_cache_is_written_back_step_by_step(layers):
    """A Linen decode cache (``MultiHeadDotProductAttention(decode=True)``): made by
    ``lazy_init`` on a full-length input, updated by each one-token call, as Linen's
    ``apply(..., mutable=["cache"])`` loop does; the same under ``nnx.jit``."""
    kwargs = {"num_heads": 2, "qkv_features": 8, "decode": True}
    linen = nn.MultiHeadDotProductAttention(**kwargs)
    for jit in (False, True):
        model = layers.MultiHeadDotProductAttention(**kwargs, rngs=nnx.Rngs(0))
        nnx.bridge.lazy_init(model, SEQ)
        variables = linen_vars(model)
        assert set(variables["cache"]) == {"cached_key", "cached_value", "cache_index"}
        step = nnx.jit(lambda m, x: m(x)) if jit else (lambda m, x: m(x))
        for t in range(SEQ.shape[1]):
            x_t = SEQ[:, t : t + 1]
            y_ref, updates = linen.apply(variables, x_t, mutable=["cache"])
            variables = {**variables, **updates}
            np.testing.assert_allclose(
                np.asarray(step(model, x_t)), np.asarray(y_ref), rtol=1e-5, atol=1e-6
            )
            assert_equal(linen_vars(model)["cache"], variables["cache"])
        assert int(model.cache_index.get_value()) == SEQ.shape[1]


def test_maxtext_style_scanned_remat_decoder(linengen):
    """Layers under ``nn.scan(nn.remat(...))`` with a ``layers`` partition axis:
    ToNNX's stacked layout, its partition specs, Linen's numbers and gradients."""
    wrapped, linen = linengen("scanned", "Decoder")
    x = jax.random.normal(jax.random.key(8), (2, 4, 8))
    with nnx.use_eager_sharding(False):  # no mesh here
        model = wrapped.Decoder(d=8, depth=3, rngs=nnx.Rngs(0))
        y = model(x)
        ref = nnx.bridge.ToNNX(linen.Decoder(8, 3), rngs=nnx.Rngs(0))
        ref.lazy_init(x)
    assert_same_state(model, ref)
    kernel = model.layers["Dense_0"]["kernel"]
    assert kernel.get_value().shape == (3, 8, 8)
    specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    assert specs["layers"]["Dense_0"]["kernel"].get_value() == (
        jax.sharding.PartitionSpec("layers", "embed", "mlp")
    )
    assert specs == nnx.get_partition_spec(nnx.state(ref, nnx.Param))
    variables = linen_vars(model)
    assert_equal(y, linen.Decoder(8, 3).apply(variables, x))
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    expected = jax.grad(
        lambda p: jnp.sum(linen.Decoder(8, 3).apply({"params": p}, x) ** 2)
    )(nn.unbox(variables["params"]))
    got = nnx.to_pure_dict(grads)  # ToNNX's layout: Linen's nesting of params
    assert jax.tree.structure(dict(got)) == jax.tree.structure(dict(expected))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_lazy_init_needs_no_mode_and_calls_still_do():
    """``lazy_init`` with no mode set runs the Linen method in eval mode (the same
    variables as with ``.eval()`` or ``.train()``); a call afterwards still needs one."""
    model = MLP(5, 3, rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(model, X)  # MLP.__call__(x, train) has no default
    for mode in ("eval", "train"):
        ref = MLP(5, 3, rngs=nnx.Rngs(0))
        getattr(ref, mode)()
        nnx.bridge.lazy_init(ref, X)
        assert_same_state(model, ref)
    assert model.deterministic is None  # lazy_init set no mode
    with pytest.raises(rt.ModeError, match="'train' follows the NNX mode"):
        model(X)
    model.eval()
    assert_equal(model(X), linen_mlp.MLP(5, 3).apply(linen_vars(model), X, False))


def test_custom_and_sown_collections(linengen):
    """A custom collection (``counter``, updated each call) becomes flax's registered
    type for it, as in ToNNX, and is written back; a sown one (``losses``) holds the
    last call's values only, as a Linen ``apply`` that is not handed them back."""
    wrapped, custom = linengen("custom", "Counter")
    linen = custom.Counter()
    model = wrapped.Counter(rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(model, X)
    ref = nnx.bridge.ToNNX(linen, rngs=nnx.Rngs(0))
    ref.lazy_init(X)
    assert type(model.n) is type(ref.n) and type(model.l2) is type(ref.l2)
    assert nnx.variablelib.variable_name_from_type(type(model.n)) == "counter"
    variables = linen_vars(model)
    for step in (1, 2, 3):
        y = model(X)
        y_ref, updates = linen.apply(
            {k: variables[k] for k in ("params", "counter")}, X, mutable=True
        )
        variables = {**variables, **updates}
        assert_equal(y, y_ref)
        assert int(model.n.get_value()) == step
        assert_equal(model.l2.get_value(), updates["losses"]["l2"])
        assert len(model.l2.get_value()) == 1
