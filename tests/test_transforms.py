"""nnxgen wrappers under JAX and Linen transforms.

Every test compares numbers with the un-transformed computation: eager apply,
the plain wrapper applied to a slice of the variables, or the same NNX module
run without nnxgen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from generated_examples import mlp as mlp_nnx
from generated_examples.encoder_linen import Backbone, Encoder
from generated_examples.mlp_linen import MLP
from nnxgen import runtime as rt

pytestmark = pytest.mark.slow  # Linen / NNX transforms compiled


# ---------------------------------------------------------------------------
# NNX modules wrapped by the tests below (see the ``local`` fixture).


class Sower(nnx.Module):
    """A Linear layer that sows its pre-activation as ``h``."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.linear(x)
        self.sow(nnx.Intermediate, "h", h)
        return nnx.relu(h)


class SowPair(nnx.Module):
    """Two sowing submodules, and a sow of its own output."""

    def __init__(self, din: int, *, rngs: nnx.Rngs):
        self.first = Sower(din, 4, rngs=rngs)
        self.second = Sower(4, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.second(self.first(x))
        self.sow(nnx.Intermediate, "out", y * 2.0)
        return y


class ResBlock(nnx.Module):
    """A residual block with a scan-style ``(carry, x) -> (carry, y)`` call."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(features, features, rngs=rngs)

    def __call__(self, carry: jax.Array, x: jax.Array | None = None):
        carry = carry + nnx.tanh(self.linear(carry))
        return carry, carry.sum(-1)


# ---------------------------------------------------------------------------
# Helpers and shared fixtures.


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    """Same tree structure and numerically equal leaves."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), (
        jax.tree.structure(actual),
        jax.tree.structure(expected),
    )
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def trees_differ(a, b) -> bool:
    return any(
        not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def member(tree, i: int):
    """Slice ``i`` of every leaf (one ensemble member / one scanned layer)."""
    return jax.tree.map(lambda leaf: leaf[i], tree)


def shapes(tree):
    return jax.tree.map(jnp.shape, tree)


def mse(pred, target):
    return jnp.mean((pred - target) ** 2)


def load_linen_variables(module: nnx.Module, variables) -> nnx.Module:
    """Copy Linen collections into an NNX module built without nnxgen (bridge layout)."""
    _, state = nnx.split(module)
    pure = nnx.to_pure_dict(state)

    def put(node, tree):
        for k, v in tree.items():
            if isinstance(v, dict):
                put(node[k], v)
            else:
                assert k in node, f"{k} is not in the NNX state"
                node[k] = v

    for collection in variables.values():
        put(pure, collection)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(module, state)
    return module


KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def lin(wrap):
    return wrap("flax.nnx:Linear")


@pytest.fixture(scope="module")
def local(wrap):
    return wrap(f"{__name__}:Sower", f"{__name__}:SowPair", f"{__name__}:ResBlock")


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(1), (4, 3))


@pytest.fixture(scope="module")
def c0():
    """Input (or initial carry) for the square 4 -> 4 layers."""
    return jax.random.normal(jax.random.key(4), (2, 4))


@pytest.fixture(scope="module")
def target():
    return jax.random.normal(jax.random.key(2), (4, 2))


@pytest.fixture(scope="module")
def mlp_vars(x):
    return MLP(3, 5, 2).init(KEY, x, train=False)


# ---------------------------------------------------------------------------
# 1. jax.jit and jax.grad through apply.


@pytest.mark.parametrize("method", ["__call__", "embed"])
def test_jit_eval_matches_eager(mlp_vars, x, method):
    model = MLP(3, 5, 2)

    def run(variables, x):
        return model.apply(variables, x, train=False, method=method)

    assert_trees_close(jax.jit(run)(mlp_vars, x), run(mlp_vars, x))


def test_jit_train_matches_eager(mlp_vars, x):
    model = MLP(3, 5, 2, dropout_rate=0.5)

    def run(variables, x, key):
        return model.apply(
            variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )

    key = jax.random.key(7)
    eager_y, eager_state = run(mlp_vars, x, key)
    jit_y, jit_state = jax.jit(run)(mlp_vars, x, key)
    assert_trees_close(jit_y, eager_y)
    assert_trees_close(jit_state, eager_state)
    # The comparison is meaningful: dropout is on and the statistics moved.
    assert trees_differ(run(mlp_vars, x, jax.random.key(8))[0], eager_y)
    assert trees_differ(eager_state["batch_stats"], mlp_vars["batch_stats"])


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_grad_matches_nnx_grad(mlp_vars, x, target, train):
    """jax.grad through apply == nnx.grad of an NNX MLP built without nnxgen."""
    # No dropout, so that train mode (BatchNorm on batch statistics) is deterministic.
    model = MLP(3, 5, 2, dropout_rate=0.0)

    def linen_loss(params):
        y, _ = model.apply(
            {"params": params, "batch_stats": mlp_vars["batch_stats"]},
            x,
            train=train,
            mutable=["batch_stats"],
        )
        return mse(y, target)

    loss, grads = jax.value_and_grad(linen_loss)(mlp_vars["params"])

    ref = mlp_nnx.MLP(3, 5, 2, dropout_rate=0.0, rngs=nnx.Rngs(123))
    load_linen_variables(ref, mlp_vars)
    ref.train() if train else ref.eval()
    ref_loss, ref_grads = nnx.value_and_grad(lambda m: mse(m(x), target))(ref)

    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert_trees_close(grads, nnx.to_pure_dict(ref_grads))


def test_grad_with_dropout_matches_grad_over_nnx_state(mlp_vars, x, target):
    """Jitted jax.grad through apply (dropout on) == jax.grad over the merged NNX state."""
    model = MLP(3, 5, 2, dropout_rate=0.5)
    key = jax.random.key(3)

    @jax.jit
    def linen_grad(params, key):
        def loss(params):
            y, _ = model.apply(
                {"params": params, "batch_stats": mlp_vars["batch_stats"]},
                x,
                train=True,
                rngs={"dropout": key},
                mutable=["batch_stats"],
            )
            return mse(y, target)

        return jax.grad(loss)(params)

    grads = linen_grad(mlp_vars["params"], key)

    # The NNX module apply would run: same state, rng streams seeded as in apply.
    ref = rt.to_nnx(model, mlp_vars, train=True, rngs={"dropout": key})
    graphdef, params, rest = nnx.split(ref, nnx.Param, ...)

    # copy=True keeps the module's BatchNorm and rng-count updates inside the trace.
    def nnx_loss(params):
        return mse(nnx.merge(graphdef, params, rest, copy=True)(x), target)

    ref_grads = jax.grad(nnx_loss)(params)

    assert_trees_close(grads, nnx.to_pure_dict(ref_grads))
    assert trees_differ(linen_grad(mlp_vars["params"], jax.random.key(4)), grads)


# ---------------------------------------------------------------------------
# 2. The wrapper as a submodule of hand-written Linen modules.


class SetupParent(nn.Module):
    """Wrappers assigned in ``setup``."""

    def setup(self):
        self.mlp = MLP(3, 5, 2)
        self.encoder = Encoder(Backbone(2, width=6), dout=3)
        self.head = nn.Dense(1)

    def __call__(self, x, train: bool):
        h = self.mlp(x, train=train)
        return self.head(self.encoder(h)), h

    def features(self, x):
        return self.mlp.embed(x, train=False)


def test_submodule_in_setup(mlp_vars, x):
    parent = SetupParent()
    variables = parent.init(KEY, x, False)

    assert set(variables["params"]) == {"mlp", "encoder", "head"}
    assert set(variables["batch_stats"]) == {"mlp"}
    assert shapes(variables["params"]["mlp"]) == shapes(mlp_vars["params"])
    assert shapes(variables["batch_stats"]["mlp"]) == shapes(mlp_vars["batch_stats"])
    assert set(variables["params"]["encoder"]) == {"backbone", "head"}

    sub = {c: variables[c]["mlp"] for c in ("params", "batch_stats")}
    enc = {"params": variables["params"]["encoder"]}
    encoder = Encoder(Backbone(2, width=6), dout=3)

    out, h = parent.apply(variables, x, False)
    assert_trees_close(h, MLP(3, 5, 2).apply(sub, x, train=False))
    expected = nn.Dense(1).apply(
        {"params": variables["params"]["head"]}, encoder.apply(enc, h)
    )
    assert_trees_close(out, expected)

    assert_trees_close(
        parent.apply(variables, x, method="features"),
        MLP(3, 5, 2).apply(sub, x, train=False, method="embed"),
    )

    # Train mode: the updated statistics nest under the submodule name too.
    (_, _), state = parent.apply(
        variables, x, True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
    )
    _, expected_state = MLP(3, 5, 2).apply(
        sub, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
    )
    assert_trees_close(state["batch_stats"]["mlp"], expected_state["batch_stats"])
    assert trees_differ(state["batch_stats"]["mlp"], sub["batch_stats"])


def test_submodule_inline_in_compact(lin, mlp_vars, x):
    class CompactParent(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            h = MLP(3, 5, 2)(x, train=train)  # auto-named MLP_0
            return lin.Linear(2, 4, name="proj")(h), h

    parent = CompactParent()
    variables = parent.init(KEY, x, False)
    assert set(variables["params"]) == {"MLP_0", "proj"}
    assert set(variables["batch_stats"]) == {"MLP_0"}
    assert shapes(variables["params"]["MLP_0"]) == shapes(mlp_vars["params"])

    sub = {c: variables[c]["MLP_0"] for c in ("params", "batch_stats")}
    out, h = parent.apply(variables, x, False)
    assert_trees_close(h, MLP(3, 5, 2).apply(sub, x, train=False))
    assert_trees_close(
        out, lin.Linear(2, 4).apply({"params": variables["params"]["proj"]}, h)
    )

    (_, _), state = parent.apply(
        variables, x, True, rngs={"dropout": jax.random.key(5)}, mutable=["batch_stats"]
    )
    _, expected_state = MLP(3, 5, 2).apply(
        sub, x, train=True, rngs={"dropout": jax.random.key(5)}, mutable=["batch_stats"]
    )
    assert_trees_close(state, {"batch_stats": {"MLP_0": expected_state["batch_stats"]}})


def test_shared_submodule_called_twice(lin, c0):
    class Shared(nn.Module):
        @nn.compact
        def __call__(self, x):
            layer = lin.Linear(4, 4, name="shared")
            return layer(layer(x))

    variables = Shared().init(KEY, c0)
    assert shapes(variables) == {"params": {"shared": {"bias": (4,), "kernel": (4, 4)}}}
    plain = lin.Linear(4, 4)
    sub = {"params": variables["params"]["shared"]}
    assert_trees_close(
        Shared().apply(variables, c0), plain.apply(sub, plain.apply(sub, c0))
    )


# ---------------------------------------------------------------------------
# 3. Linen lifted transforms: nn.jit, nn.remat, nn.vmap, nn.scan.


def test_nn_jit_wrapper(lin, x):
    plain, jitted = lin.Linear(3, 4), nn.jit(lin.Linear)(3, 4)
    variables = plain.init(KEY, x)
    jit_variables = jitted.init(KEY, x)
    # nn.jit folds rngs differently (so does nn.jit(nn.Dense)): same layout, other values.
    assert shapes(jit_variables) == shapes(variables)
    assert_trees_close(jitted.apply(variables, x), plain.apply(variables, x))
    assert_trees_close(jitted.apply(jit_variables, x), plain.apply(jit_variables, x))


def test_nn_remat_wrapper(lin, x):
    plain, remat = lin.Linear(3, 4), nn.remat(lin.Linear)(3, 4)
    variables = plain.init(KEY, x)
    assert_trees_close(remat.init(KEY, x), variables, rtol=0, atol=0)
    assert_trees_close(remat.apply(variables, x), plain.apply(variables, x))

    def grad_of(model):
        return jax.grad(lambda p: jnp.sum(jnp.sin(model.apply({"params": p}, x))))(
            variables["params"]
        )

    assert_trees_close(grad_of(remat), grad_of(plain))


@pytest.mark.parametrize("in_axes", [None, 0], ids=["broadcast_x", "per_member_x"])
def test_nn_vmap_ensemble(lin, x, in_axes):
    Ensemble = nn.vmap(
        lin.Linear,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=in_axes,
        axis_size=3,
    )
    xs = x if in_axes is None else jnp.stack([x, 2.0 * x, -x])
    ensemble = Ensemble(3, 4)
    variables = ensemble.init(KEY, xs)
    assert shapes(variables) == {"params": {"bias": (3, 4), "kernel": (3, 3, 4)}}
    kernels = variables["params"]["kernel"]
    assert trees_differ(kernels[0], kernels[1]) and trees_differ(kernels[1], kernels[2])

    ys = ensemble.apply(variables, xs)
    assert ys.shape == (3, 4, 4)
    plain = lin.Linear(3, 4)
    for i in range(3):
        xi = x if in_axes is None else xs[i]
        assert_trees_close(ys[i], plain.apply(member(variables, i), xi))


def test_nn_scan_stack_of_linear_wrappers(lin, c0):
    class Cell(nn.Module):
        @nn.compact
        def __call__(self, carry, _):
            y = lin.Linear(4, 4, name="layer")(carry)
            return jnp.tanh(y), y

    Stack = nn.scan(
        Cell, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
    )
    variables = Stack().init(KEY, c0, None)
    assert shapes(variables) == {
        "params": {"layer": {"bias": (3, 4), "kernel": (3, 4, 4)}}
    }
    carry, ys = Stack().apply(variables, c0, None)

    plain, c = lin.Linear(4, 4), c0
    for i in range(3):
        y = plain.apply({"params": member(variables["params"]["layer"], i)}, c)
        assert_trees_close(ys[i], y)
        c = jnp.tanh(y)
    assert_trees_close(carry, c)


def test_nn_scan_residual_block_wrapper(local, c0):
    Stack = nn.scan(
        local.ResBlock,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        length=3,
    )
    variables = Stack(4).init(KEY, c0, None)
    assert shapes(variables) == {
        "params": {"linear": {"bias": (3, 4), "kernel": (3, 4, 4)}}
    }
    carry, ys = Stack(4).apply(variables, c0, None)
    assert ys.shape == (3, 2)

    c = c0
    for i in range(3):
        c, y = local.ResBlock(4).apply(member(variables, i), c, None)
        assert_trees_close(ys[i], y)
    assert_trees_close(carry, c)


# ---------------------------------------------------------------------------
# 4. BatchNorm statistics under nn.vmap / nn.jit.
#
# Linen's vmap drops keyword arguments and nn.remat cannot make a keyword-only
# argument static, so ``train=`` is passed from a small hand-written parent.


class MLPEnsemble(nn.Module):
    @nn.compact
    def __call__(self, xs, train: bool):
        run = nn.vmap(
            lambda mlp, x: mlp(x, train=train),
            variable_axes={"params": 0, "batch_stats": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=0,
            axis_size=3,
        )
        return run(MLP(3, 5, 2, name="mlp"), xs)


def test_batch_stats_update_under_nn_vmap(x):
    xs = jnp.stack([x, 2.0 * x + 1.0, -x])
    ensemble = MLPEnsemble()
    # (jitted only to save test time: eager vmap compiles every op on its own)
    variables = jax.jit(ensemble.init, static_argnums=2)(KEY, xs, False)
    assert shapes(variables["batch_stats"]) == {
        "mlp": {"bn": {"mean": (3, 5), "var": (3, 5)}}
    }

    @jax.jit
    def train_and_eval(variables, xs, key):
        _, state = ensemble.apply(
            variables, xs, True, rngs={"dropout": key}, mutable=["batch_stats"]
        )
        return state, ensemble.apply(variables, xs, False)

    state, eval_ys = train_and_eval(variables, xs, jax.random.key(6))
    assert set(state) == {"batch_stats"}

    plain = MLP(3, 5, 2)
    for i in range(3):
        sub = {c: member(variables[c]["mlp"], i) for c in ("params", "batch_stats")}
        _, expected = plain.apply(
            sub, xs[i], train=True, rngs={"dropout": KEY}, mutable=["batch_stats"]
        )
        updated = member(state["batch_stats"]["mlp"], i)
        assert_trees_close(updated, expected["batch_stats"])
        assert trees_differ(updated, sub["batch_stats"])
        assert_trees_close(eval_ys[i], plain.apply(sub, xs[i], train=False))


def test_batch_stats_update_under_nn_jit(mlp_vars, x):
    plain = MLP(3, 5, 2, dropout_rate=0.0)
    jitted = nn.jit(MLP, static_argnames="train")(3, 5, 2, dropout_rate=0.0)

    y, state = jitted.apply(mlp_vars, x, train=True, mutable=["batch_stats"])
    expected_y, expected_state = plain.apply(
        mlp_vars, x, train=True, mutable=["batch_stats"]
    )
    assert_trees_close(y, expected_y)
    assert_trees_close(state, expected_state)
    assert trees_differ(state["batch_stats"], mlp_vars["batch_stats"])
    assert_trees_close(
        jitted.apply(mlp_vars, x, train=False), plain.apply(mlp_vars, x, train=False)
    )


def test_batch_stats_update_under_nn_remat(mlp_vars, x):
    class Remat(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            return nn.remat(lambda mlp, x: mlp(x, train=train))(
                MLP(3, 5, 2, name="mlp"), x
            )

    variables = {c: {"mlp": mlp_vars[c]} for c in mlp_vars}
    _, state = Remat().apply(
        variables, x, True, rngs={"dropout": KEY}, mutable=["batch_stats"]
    )
    _, expected = MLP(3, 5, 2).apply(
        mlp_vars, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"]
    )
    assert_trees_close(state["batch_stats"]["mlp"], expected["batch_stats"])
    assert_trees_close(
        Remat().apply(variables, x, False), MLP(3, 5, 2).apply(mlp_vars, x, train=False)
    )


# ---------------------------------------------------------------------------
# 5. Module.sow(nnx.Intermediate, ...) -> the Linen 'intermediates' collection.


@pytest.mark.parametrize(
    "nnx_cls, args", [(Sower, (3, 4)), (SowPair, (3,))], ids=["Sower", "SowPair"]
)
def test_sow_returns_intermediates(local, x, nnx_cls, args):
    wrapper = getattr(local, nnx_cls.__name__)(*args)
    variables = wrapper.init(KEY, x)
    assert set(variables) == {
        "params"
    }  # like Linen, init does not return intermediates

    ref = load_linen_variables(nnx_cls(*args, rngs=nnx.Rngs(9)), variables)
    ref_y, captured = nnx.capture(ref, nnx.Intermediate)(x)
    expected = {"intermediates": nnx.to_pure_dict(captured)}

    y, state = wrapper.apply(variables, x, mutable=["intermediates"])
    assert_trees_close(y, ref_y)
    assert_trees_close(state, expected)

    jit_y, jit_state = jax.jit(
        lambda v, x: wrapper.apply(v, x, mutable=["intermediates"])
    )(variables, x)
    assert_trees_close((jit_y, jit_state), (ref_y, expected))

    # Not mutable: a plain output, nothing sown.
    assert_trees_close(wrapper.apply(variables, x), ref_y)


def test_sow_in_a_linen_parent(local, x):
    class Parent(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = local.Sower(3, 4, name="enc")(x)
            self.sow("intermediates", "y", y)
            return y

    variables = Parent().init(KEY, x)
    y, state = Parent().apply(variables, x, mutable=["intermediates"])

    ref = load_linen_variables(
        Sower(3, 4, rngs=nnx.Rngs(9)), {"params": variables["params"]["enc"]}
    )
    ref_y, captured = nnx.capture(ref, nnx.Intermediate)(x)
    assert_trees_close(
        state, {"intermediates": {"enc": nnx.to_pure_dict(captured), "y": (ref_y,)}}
    )
    assert_trees_close(y, ref_y)


def test_sow_under_nn_scan(local, c0):
    class Cell(nn.Module):
        @nn.compact
        def __call__(self, carry, _):
            return local.Sower(4, 4, name="layer")(carry), None

    Stack = nn.scan(
        Cell,
        variable_axes={"params": 0, "intermediates": 0},
        split_rngs={"params": True},
        length=3,
    )
    variables = Stack().init(KEY, c0, None)
    (carry, _), state = Stack().apply(variables, c0, None, mutable=["intermediates"])
    assert shapes(state) == {"intermediates": {"layer": {"h": ((3, 2, 4),)}}}

    plain, c = local.Sower(4, 4), c0
    for i in range(3):
        sub = {"params": member(variables["params"]["layer"], i)}
        c, sown = plain.apply(sub, c, mutable=["intermediates"])
        assert_trees_close(
            member(state["intermediates"]["layer"], i), sown["intermediates"]
        )
    assert_trees_close(carry, c)


def test_sow_wrapper_called_twice_accumulates(local, c0):
    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x):
            layer = local.Sower(4, 4, name="layer")
            return layer(layer(x))

    variables = Twice().init(KEY, c0)
    _, state = Twice().apply(variables, c0, mutable=["intermediates"])

    ref = load_linen_variables(
        Sower(4, 4, rngs=nnx.Rngs(9)), {"params": variables["params"]["layer"]}
    )
    _, captured = nnx.capture(lambda m, x: m(m(x)), nnx.Intermediate)(ref, c0)
    assert_trees_close(state, {"intermediates": {"layer": nnx.to_pure_dict(captured)}})


def test_write_back_same_for_every_spelling_of_mutable(mlp_vars, x):
    """mutable='batch_stats' / ['batch_stats'] write back by cached paths; True walks
    the module: the same updated statistics either way, and they moved."""
    model = MLP(3, 5, 2)
    rngs = {"dropout": jax.random.key(3)}
    outs = [
        model.apply(mlp_vars, x, train=True, rngs=rngs, mutable=m)
        for m in ("batch_stats", ["batch_stats"], True)
    ]
    for y, upd in outs[1:]:
        assert_trees_close(y, outs[0][0])
        assert_trees_close(upd["batch_stats"], outs[0][1]["batch_stats"])
    assert trees_differ(outs[0][1]["batch_stats"], mlp_vars["batch_stats"])
    assert set(outs[2][1]) == {"params", "batch_stats"}


def test_mode_context_reaches_wrappers_under_nn_vmap(mlp_vars, x):
    """nn.vmap drops keyword arguments, so `train=` cannot reach the wrapper;
    `rt.mode(train=...)` does, and each member matches the plain wrapper."""
    Ensemble = nn.vmap(
        MLP,
        variable_axes={"params": 0, "batch_stats": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=0,
    )
    xs = jnp.stack([x, 2.0 * x])
    ensemble = Ensemble(3, 5, 2)
    variables = ensemble.init(KEY, xs)  # init needs no mode (as after .eval())
    with pytest.raises(rt.ModeError, match=r"nnxgen\.runtime\.mode\(train=\.\.\.\)"):
        ensemble.apply(variables, xs)
    with rt.mode(train=False):
        assert_trees_close(ensemble.init(KEY, xs), variables)
        ys = ensemble.apply(variables, xs)
    plain = MLP(3, 5, 2)
    for i in range(2):
        assert_trees_close(ys[i], plain.apply(member(variables, i), xs[i], train=False))
    with rt.mode(train=True):
        _, upd = ensemble.apply(
            variables, xs, rngs={"dropout": jax.random.key(5)}, mutable=["batch_stats"]
        )
        # an explicit train= still wins over the context
        y_eval = plain.apply(member(variables, 0), xs[0], train=False)
    assert_trees_close(y_eval, ys[0])
    for i in range(2):
        _, ref = plain.apply(
            member(variables, i), xs[i], train=True,
            rngs={"dropout": jax.random.key(9)}, mutable=["batch_stats"],
        )  # fmt: skip
        assert_trees_close(member(upd["batch_stats"], i), ref["batch_stats"])
