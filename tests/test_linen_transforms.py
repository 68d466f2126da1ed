"""NNX wrappers of Linen modules under NNX transforms, optimizers and composition.

The wrappers are the golden ``generated_examples/linen_mlp_nnx.py`` (``MLP``:
Dense -> BatchNorm -> relu -> Dropout -> Dense, ``train`` following
``.train()`` / ``.eval()``) and a residual ``Block`` generated from
``tests/fixtures/linengen/stack.py``. Every number is compared with a
reference: plain Linen ``apply`` on the wrapper's own variables (dropout keys
reproduced from an identically seeded ``nnx.Rngs(...).fork()``, as the runtime
draws them), or ``nnx.bridge.ToNNX`` with the same seed.

- ``nnx.jit``: a jitted forward equals eager and Linen ``apply`` (eval); the
  first call (variable creation) inside ``nnx.jit`` gives the state and output
  of an eager first call with the same seed; a jitted train step writes back
  the batch statistics and output of Linen ``apply(..., mutable=["batch_stats"],
  rngs={"dropout": key})`` and equals ``ToNNX``, step after step;
- ``nnx.grad`` (eval) and a jitted ``nnx.value_and_grad`` (train: dropout +
  batch statistics, written back from inside the transform) equal ``jax.grad``
  / ``jax.value_and_grad`` of the Linen ``apply`` loss w.r.t. ``params``;
- ``nnx.Optimizer(model, optax.adam, wrt=nnx.Param)``: jitted train steps lower
  the loss, equal the same loop on ``ToNNX`` (losses and every variable), and
  the trained parameters give the same outputs through plain Linen ``apply``;
- stacked wrappers: ``nnx.vmap`` + ``nnx.split_rngs`` construction (variables
  made inside the vmapped function by ``nnx.bridge.lazy_init`` or by a first
  call) has ``ToNNX``'s stacked layout and values; ``nnx.scan`` over the stack
  (carry = activations) and ``nnx.vmap`` over it equal a python loop of Linen
  ``apply`` over each layer's slice;
- the wrapper inside a hand-written ``nnx.Module`` (beside an ``nnx.Linear``):
  its variables sit under its attribute in ``nnx.state``; ``outer.eval()`` /
  ``outer.train()`` reach the Linen ``train`` argument (running averages vs
  batch statistics + dropout, as Linen ``apply``); grads equal ``jax.grad`` of
  the Linen + linear loss; an ``nnx.Optimizer`` loop lowers the loss and the
  trained model equals Linen ``apply`` + the trained linear layer.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from generated_examples.linen_mlp import MLP as LinenMLP
from generated_examples.linen_mlp_nnx import MLP
from tests.helpers import ROOT
from tests.linen_helpers import assert_same_state, draw, linen_vars

FIXTURES = ROOT / "tests" / "fixtures"

X = jax.random.normal(jax.random.key(1), (4, 3))  # (batch, din)
Y = jax.random.normal(jax.random.key(2), (4, 2))  # regression targets
H = jax.random.normal(jax.random.key(3), (2, 4))  # (batch, features) for Block
N = 3  # stacked layers
#: MLP(dmid, dout, dropout_rate): a high rate, so that dropout visibly acts
ARGS = (8, 2, 0.5)


pytestmark = pytest.mark.slow  # Linen transforms compiled


def _rngs() -> nnx.Rngs:
    return nnx.Rngs(params=0, dropout=1)


def _keys(calls: int) -> list[dict[str, jax.Array]]:
    """The keys of a wrapper's first ``calls`` calls (lazy_init counts as one)."""
    forked = _rngs().fork()  # what linen_init stores
    return [draw(forked) for _ in range(calls)]


def _close(a, b, tol: float = 1e-6) -> None:
    """Same tree structure, leaves equal up to float rounding (jit vs eager)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def _mlp() -> MLP:
    model = MLP(*ARGS, rngs=_rngs())
    nnx.bridge.lazy_init(model, X, train=False)
    return model


def _to_nnx() -> nnx.bridge.ToNNX:
    ref = nnx.bridge.ToNNX(LinenMLP(*ARGS), rngs=_rngs())
    ref.lazy_init(X, train=False)
    return ref


def _mse(y: jax.Array) -> jax.Array:
    return jnp.mean((y - Y) ** 2)


def _linen_train(variables: dict, key: jax.Array, args: tuple = ARGS):
    """Linen ``MLP.apply`` in training: (output, updated batch statistics)."""
    rngs = {"dropout": key}
    return LinenMLP(*args).apply(
        variables, X, train=True, rngs=rngs, mutable=["batch_stats"]
    )


# ---------------------------------------------------------------------------
# nnx.jit


def test_jit_forward_equals_eager_and_linen_apply():
    model = _mlp()
    model.eval()
    jitted = nnx.jit(lambda m, x: m(x))(model, X)
    eager = model(X)
    linen = LinenMLP(*ARGS).apply(linen_vars(model), X, train=False)
    _close(jitted, eager)
    _close(jitted, linen)
    # train mode reaches the jitted call: the numbers change (BatchNorm + dropout)
    model.train()
    assert not np.allclose(nnx.jit(lambda m, x: m(x))(model, X), eager, atol=1e-3)


def test_first_call_inside_jit_creates_the_eager_variables():
    step = nnx.jit(lambda m, x: m(x))
    inside = MLP(*ARGS, rngs=_rngs())
    inside.train()
    y_inside = step(inside, X)  # variables created under the trace
    eager = MLP(*ARGS, rngs=_rngs())
    eager.train()
    y_eager = eager(X)
    assert sorted(linen_vars(inside)) == ["batch_stats", "params"]
    assert_same_state(inside, eager, rtol=1e-6)
    _close(y_inside, y_eager)
    # and the jitted model keeps working, on the variables it made
    _close(step(inside, X), eager(X))
    assert_same_state(inside, eager, rtol=1e-6)


def test_jit_train_step_writes_back_linen_batch_stats():
    model, ref = _mlp(), _to_nnx()
    model.train()
    step = nnx.jit(lambda m, x: m(x))
    ref_step = nnx.jit(lambda m, x: m(x, train=True, mutable=["batch_stats"]))
    keys = _keys(3)[1:]  # lazy_init drew the first
    for key in keys:
        before = linen_vars(model)
        y = step(model, X)
        expected, updates = _linen_train(before, key["dropout"])
        _close(y, expected)
        _close(linen_vars(model)["batch_stats"], updates["batch_stats"])
        old, new = before["batch_stats"]["bn"], updates["batch_stats"]["bn"]
        assert not np.allclose(new["mean"], old["mean"])
        _close(y, ref_step(ref, X))
        assert_same_state(model, ref, rtol=1e-6)
    # the dropout key matters: another key gives other numbers
    other, _ = _linen_train(before, jax.random.key(99))
    assert not np.allclose(other, y)


# ---------------------------------------------------------------------------
# nnx.grad / nnx.value_and_grad


def test_grad_equals_jax_grad_of_linen_apply_eval():
    model = _mlp()
    model.eval()
    grads = nnx.grad(lambda m: _mse(m(X)))(model)
    variables = linen_vars(model)

    def linen_loss(params):
        y = LinenMLP(*ARGS).apply({**variables, "params": params}, X, train=False)
        return _mse(y)

    expected = jax.grad(linen_loss)(variables["params"])
    got = nnx.to_pure_dict(grads)
    assert set(got) == {"dense1", "bn", "dense2"}
    _close(got, expected)
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(expected))


def test_jitted_value_and_grad_in_train_mode_equals_linen():
    model = _mlp()
    model.train()
    variables = linen_vars(model)
    key = _keys(2)[1]["dropout"]
    loss, grads = nnx.jit(nnx.value_and_grad(lambda m: _mse(m(X))))(model)

    def linen_loss(params):
        y, updates = LinenMLP(*ARGS).apply(
            {**variables, "params": params}, X, train=True,
            rngs={"dropout": key}, mutable=["batch_stats"],
        )  # fmt: skip
        return _mse(y), updates

    (expected_loss, updates), expected = jax.value_and_grad(linen_loss, has_aux=True)(
        variables["params"]
    )
    _close(loss, expected_loss)
    _close(nnx.to_pure_dict(grads), expected)
    # the batch statistics computed inside the transform are written back
    _close(linen_vars(model)["batch_stats"], updates["batch_stats"])
    # parameters are untouched by taking gradients
    _close(linen_vars(model)["params"], variables["params"], tol=0.0)


# ---------------------------------------------------------------------------
# nnx.Optimizer


def _train(model, call, steps: int = 6) -> list[float]:
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: _mse(call(m, X)))(model)
        optimizer.update(model, grads)
        return loss

    return [float(step(model, optimizer)) for _ in range(steps)]


def test_optimizer_loop_equals_to_nnx_and_linen_apply():
    model, ref = _mlp(), _to_nnx()
    model.train()
    losses = _train(model, lambda m, x: m(x))
    ref_losses = _train(ref, lambda m, x: m(x, train=True, mutable=["batch_stats"]))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    assert losses[-1] < losses[0]
    assert_same_state(model, ref, rtol=1e-5)
    # the trained parameters, through plain Linen apply
    model.eval()
    expected = LinenMLP(*ARGS).apply(linen_vars(model), X, train=False)
    _close(model(X), expected)
    _close(ref(X, train=False), expected)


# ---------------------------------------------------------------------------
# Stacked wrappers: nnx.vmap construction, nnx.scan and nnx.vmap over the stack


@pytest.fixture(scope="module")
def stack_mod(wrap):
    sys.path.insert(0, str(FIXTURES))
    try:
        yield wrap("linengen.stack:Block")
    finally:
        sys.path.remove(str(FIXTURES))


def _stack(make_one, first_call: bool = False):
    @nnx.split_rngs(splits=N)
    @nnx.vmap(in_axes=0, out_axes=0)
    def make(rngs):
        block = make_one(rngs)
        if first_call:  # not for ToNNX: it needs lazy_init
            block(H)
        else:
            nnx.bridge.lazy_init(block, H)
        return block

    return make(nnx.Rngs(0))


def _layer_params(stack) -> list[dict]:
    params = nnx.to_pure_dict(nnx.state(stack, nnx.Param))
    return [jax.tree.map(lambda a, i=i: a[i], params) for i in range(N)]


@pytest.mark.parametrize("first_call", [False, True], ids=["lazy_init", "first_call"])
def test_vmap_construction_scan_and_vmap_over_the_stack(stack_mod, first_call):
    from linengen.stack import Block as LinenBlock

    stack = _stack(lambda r: stack_mod.Block(4, rngs=r), first_call)
    ref = _stack(lambda r: nnx.bridge.ToNNX(LinenBlock(4), rngs=r))
    assert_same_state(stack, ref)
    kernels = nnx.to_pure_dict(nnx.state(stack, nnx.Param))["Dense_0"]["kernel"]
    assert kernels.shape == (N, 4, 4)
    assert not np.allclose(kernels[0], kernels[1])  # split rngs: distinct layers
    layers = _layer_params(stack)

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def forward(block, h):
        return block(h)

    h = H
    for params in layers:
        h = LinenBlock(4).apply({"params": params}, h)
    _close(forward(stack, H), h, tol=1e-5)
    _close(nnx.jit(forward)(stack, H), h, tol=1e-5)

    each = nnx.vmap(lambda block, x: block(x), in_axes=(0, None))(stack, H)
    assert each.shape == (N, *H.shape)
    for i, params in enumerate(layers):
        _close(each[i], LinenBlock(4).apply({"params": params}, H), tol=1e-5)


# ---------------------------------------------------------------------------
# Inside a hand-written NNX module


class Head(nnx.Module):
    """An MLP wrapper followed by an ``nnx.Linear``."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.mlp = MLP(8, 4, 0.5, rngs=rngs)
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.mlp(x))


def _head() -> Head:
    outer = Head(rngs=nnx.Rngs(params=0, dropout=1))
    outer.eval()
    nnx.bridge.lazy_init(outer, X)
    return outer


def _linear_params(outer: Head) -> dict:
    return nnx.to_pure_dict(nnx.state(outer.out, nnx.Param))


def _linear(p: Mapping):
    """``nnx.Linear`` as a function of its parameters."""
    return lambda h: h @ p["kernel"] + p["bias"]


def test_inside_an_nnx_module_state_and_modes():
    outer = _head()
    paths = {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(outer))}
    for path in [
        ("mlp", "dense1", "kernel"), ("mlp", "bn", "scale"), ("mlp", "bn", "mean"),
        ("mlp", "dense2", "bias"), ("out", "kernel"), ("out", "bias"),
    ]:  # fmt: skip
        assert path in paths, path
    assert type(outer.mlp.bn["mean"]) is nnx.BatchStat
    linen, head = LinenMLP(8, 4, 0.5), _linear(_linear_params(outer))
    # the wrapper is built first: it forks the outer Rngs before nnx.Linear draws
    forked = nnx.Rngs(params=0, dropout=1).fork()

    draw(forked)  # lazy_init's keys
    outer.train()
    assert outer.mlp.use_running_average is False and outer.mlp.deterministic is False
    before = linen_vars(outer.mlp)
    key = draw(forked)["dropout"]
    y_train = outer(X)
    expected, updates = _linen_train(before, key, (8, 4, 0.5))
    _close(y_train, head(expected))
    _close(linen_vars(outer.mlp)["batch_stats"], updates["batch_stats"])
    old, new = before["batch_stats"]["bn"], updates["batch_stats"]["bn"]
    assert not np.allclose(new["var"], old["var"])

    outer.eval()  # back to the running averages (the updated ones), no dropout
    assert outer.mlp.use_running_average is True and outer.mlp.deterministic is True
    y_eval = outer(X)
    _close(y_eval, head(linen.apply(linen_vars(outer.mlp), X, train=False)))
    assert not np.allclose(y_eval, y_train, atol=1e-3)
    _close(linen_vars(outer.mlp)["batch_stats"], updates["batch_stats"], tol=0.0)


def test_inside_an_nnx_module_grad_and_optimizer():
    outer = _head()
    outer.eval()
    variables = linen_vars(outer.mlp)
    linear = _linear_params(outer)

    def linen_loss(params, linear):
        h = LinenMLP(8, 4, 0.5).apply({**variables, "params": params}, X, train=False)
        return _mse(_linear(linear)(h))

    g_mlp, g_out = jax.grad(linen_loss, argnums=(0, 1))(variables["params"], linear)
    grads = nnx.to_pure_dict(nnx.grad(lambda m: _mse(m(X)))(outer))
    assert set(grads) == {"mlp", "out"}
    _close(grads["mlp"], g_mlp)
    _close(grads["out"], g_out)

    outer.train()
    losses = _train(outer, lambda m, x: m(x))
    assert losses[-1] < losses[0]
    outer.eval()
    h = LinenMLP(8, 4, 0.5).apply(linen_vars(outer.mlp), X, train=False)
    trained = _linear_params(outer)
    _close(outer(X), _linear(trained)(h))
    assert not np.allclose(trained["kernel"], linear["kernel"])
