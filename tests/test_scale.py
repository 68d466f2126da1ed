"""At scale: sharding metadata, an 8-device mesh, checkpoints, Linen transforms."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, serialization
from jax.sharding import Mesh, PartitionSpec

from nnxgen import convert
from nnxgen import runtime as rt
from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


pytestmark = pytest.mark.slow  # 8-device mesh, checkpoints


@pytest.fixture(scope="module")
def S(wrap):
    sys.path.insert(0, str(FIXTURES))
    return wrap("scalepkg.models")


@pytest.fixture
def no_eager_sharding():
    with nnx.use_eager_sharding(False):
        yield


X = jnp.linspace(-1, 1, 16).reshape(2, 8)


def test_sharded_variables_are_linen_boxes(S, no_eager_sharding):
    model = S.ShardedMLP(8, 16, 4)
    v = model.init(jax.random.key(0), X)
    assert isinstance(v["params"]["up"]["kernel"], nn.Partitioned)
    expected = {"up": {"kernel": PartitionSpec("data", "model"), "bias": PartitionSpec("model")},
                "down": {"kernel": PartitionSpec("model", "data")}}  # fmt: skip
    assert nn.get_partition_spec(v)["params"] == expected
    # abstract init: no memory, same specs (flax's bridge raises here under a mesh)
    abstract = jax.eval_shape(model.init, jax.random.key(0), X)
    assert nn.get_partition_spec(abstract)["params"] == expected
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
    # unboxed values are what the NNX module holds
    ref = rt.to_nnx(model, v)
    assert jnp.array_equal(nn.unbox(v)["params"]["up"]["kernel"], ref.up.kernel[...])
    # boxed variables apply, and boxes survive mutable write-back
    y = model.apply(v, X)
    y2, new = model.apply(v, X, mutable=["params"])
    assert jnp.array_equal(y, y2) and isinstance(new["params"]["up"]["kernel"], nn.Partitioned)


def test_vmap_and_scan_add_the_stacked_axis(S, no_eager_sharding):
    class Ensemble(nn.Module):
        @nn.compact
        def __call__(self, x):
            V = nn.vmap(
                S.ShardedMLP, variable_axes={"params": 0}, split_rngs={"params": True},
                in_axes=None, axis_size=3, metadata_params={nn.PARTITION_NAME: "ens"},
            )  # fmt: skip
            return V(8, 16, 4, name="members")(x)

    v = Ensemble().init(jax.random.key(0), X)
    spec = nn.get_partition_spec(v)["params"]["members"]
    assert spec["up"]["kernel"] == PartitionSpec("ens", "data", "model")
    assert spec["down"]["kernel"] == PartitionSpec("ens", "model", "data")
    out = Ensemble().apply(v, X)
    member1 = jax.tree.map(lambda b: b[1], nn.unbox(v)["params"]["members"])
    assert jnp.allclose(out[1], S.ShardedMLP(8, 16, 4).apply({"params": member1}, X), atol=1e-6)

    class Layer(nn.Module):
        @nn.compact
        def __call__(self, c, _):
            return S.ShardedMLP(8, 16, 8, name="mlp")(c), None

    class Deep(nn.Module):
        @nn.compact
        def __call__(self, x):
            Scan = nn.scan(
                Layer, variable_axes={"params": 0}, split_rngs={"params": True}, length=3,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )  # fmt: skip
            return Scan(name="stack")(x, None)[0]

    v = Deep().init(jax.random.key(0), X)
    spec = nn.get_partition_spec(v)["params"]["stack"]["mlp"]
    assert spec["up"]["kernel"] == PartitionSpec("layers", "data", "model")
    y = Deep().apply(v, X)
    h = X
    for i in range(3):
        layer_i = jax.tree.map(lambda b: b[i], nn.unbox(v)["params"]["stack"]["mlp"])
        h = S.ShardedMLP(8, 16, 8).apply({"params": layer_i}, h)
    assert jnp.allclose(y, h, atol=1e-5)


def test_metadata_fn_hook_boxes_logically(S, no_eager_sharding):
    def logical(var):
        value = rt.default_metadata_fn(var)
        if isinstance(value, nn.Partitioned):
            names = tuple({"data": "batch", "model": "hidden"}[n] for n in value.names)
            return nn.LogicallyPartitioned(value.value, names)
        return value

    model = S.ShardedMLP(8, 16, 4)
    with rt.metadata_fn(logical):
        v = jax.eval_shape(model.init, jax.random.key(0), X)
    assert isinstance(v["params"]["up"]["kernel"], nn.LogicallyPartitioned)
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("x", "y"))
    rules = [("batch", "x"), ("hidden", "y")]
    sh = nn.logical_to_mesh_sharding(nn.get_partition_spec(v), mesh, rules)
    assert sh["params"]["up"]["kernel"].spec == PartitionSpec("x", "y")
    assert sh["params"]["down"]["kernel"].spec == PartitionSpec("y", "x")


def test_eight_device_mesh_sharded_init_and_train_step(S, tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "PYTHONPATH": os.pathsep.join([str(os.path.dirname(S.__file__)), str(FIXTURES), str(ROOT)]),
    }
    res = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mesh_check.py"), S.__name__],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    assert out["laid_out"] == out["annotated"] and len(out["annotated"]) == 3
    assert out["same_init"]
    assert abs(out["loss_sharded"] - out["loss_single"]) < 1e-5
    assert out["max_param_diff"] < 1e-5
    assert out["kernel_after_step"] == "PartitionSpec('data', 'model')" or out[
        "kernel_after_step"
    ] == "P('data', 'model')"


# ---------------------------------------------------------------------------
# Checkpoints.


@pytest.fixture(scope="module")
def stack(S):
    model = S.Stack(4, depth=2)
    x = jnp.linspace(-1, 1, 12).reshape(3, 4)
    v = model.init(jax.random.key(0), x, train=False)
    _, upd = model.apply(v, x, train=True, mutable=["batch_stats"])
    v = {**flax.core.unfreeze(v), **flax.core.unfreeze(upd)}
    return model, v, x


def test_orbax_save_restore_gives_identical_outputs(stack, tmp_path):
    import orbax.checkpoint as ocp

    model, v, x = stack
    path = tmp_path / "ckpt"
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, v)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(path, jax.eval_shape(lambda: v))
    assert jnp.array_equal(model.apply(restored, x, train=False), model.apply(v, x, train=False))


def test_msgpack_round_trip_with_string_list_keys(stack, S):
    model, v, x = stack
    restored = serialization.msgpack_restore(serialization.to_bytes(v))
    assert "0" in restored["params"]["layers"]  # integer keys came back as strings
    assert jnp.array_equal(model.apply(restored, x, train=False), model.apply(v, x, train=False))
    # flax's own bridge cannot apply such a checkpoint
    from scalepkg import models

    bridge = nnx.bridge.to_linen(models.Stack, 4, depth=2)
    with pytest.raises(KeyError):
        bridge.apply(restored, x)


def test_bridge_checkpoints_move_both_ways(stack):
    from scalepkg import models

    model, v, x = stack
    bridge = nnx.bridge.to_linen(models.Stack, 4, depth=2)
    bv = bridge.init(jax.random.key(1), x)
    assert jax.tree.structure(bv) == jax.tree.structure(v)
    assert convert.from_bridge(bv) == bv

    def bridge_eval(variables):
        def run(m):
            nnx_mod = m  # the bridge instance; eval through its NNX method call
            return nnx_mod(x, nnx_method=lambda self, x: (self.eval(), self(x))[1])

        return nn.apply(run, bridge)(variables)

    # ours applies the bridge's variables, and the bridge applies ours, with equal results
    assert jnp.allclose(model.apply(bv, x, train=False), bridge_eval(bv), atol=1e-6)
    assert jnp.allclose(bridge_eval(v), model.apply(v, x, train=False), atol=1e-6)


def _kauldron_layout(module):
    """Variables as Kauldron's linen_from_nnx stores them (params + nnx collection)."""
    gdef, params, rng_vars, attributes = nnx.split(
        module, nnx.Param, nnx.Any(nnx.RngCount, nnx.RngKey), ...
    )

    def as_dict(state):
        return {k: as_dict(v) if isinstance(v, (nnx.State, dict)) else v for k, v in state.items()}

    return {
        "params": as_dict(params),
        "nnx": {"graphdef": gdef, "rng_vars": as_dict(rng_vars), "attributes": as_dict(attributes)},
    }


def test_convert_kauldron_linen_from_nnx_variables(stack):
    from scalepkg import models

    model, v, x = stack
    module = models.Stack(4, depth=2, rngs=nnx.Rngs(3))
    module.bn.mean[...] = jnp.arange(4.0)  # non-trivial batch stats
    kd = _kauldron_layout(module)
    assert isinstance(kd["params"]["layers"][0]["kernel"], nnx.Param)
    converted = convert.from_linen_from_nnx(kd)
    assert set(converted) == {"params", "batch_stats"}
    assert jax.tree.structure(converted) == jax.tree.structure(v)
    module.eval()
    assert jnp.allclose(model.apply(converted, x, train=False), module(x), atol=1e-6)
    # after an Orbax restore without a target, leaves are {'value': x} dicts
    lost = jax.tree.map(
        lambda var: {"value": var.get_value()}, {"params": kd["params"], "nnx": {
            "attributes": kd["nnx"]["attributes"]}}, is_leaf=lambda z: isinstance(z, nnx.Variable),
    )  # fmt: skip
    with pytest.raises(ValueError, match="pass like="):
        convert.from_linen_from_nnx(lost)
    like = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    again = convert.from_linen_from_nnx(lost, like=like)
    assert jnp.allclose(model.apply(again, x, train=False), module(x), atol=1e-6)


def test_host_arrays_from_a_checkpoint_are_never_written_in_place(stack):
    model, v, x = stack
    restored = serialization.msgpack_restore(serialization.to_bytes(v))  # numpy leaves
    mean = restored["batch_stats"]["bn"]["mean"]
    assert isinstance(mean, np.ndarray)
    before = mean.copy()
    _, upd = model.apply(restored, x * 3.0, train=True, mutable=["batch_stats"])
    assert np.array_equal(mean, before)
    assert not np.allclose(np.asarray(upd["batch_stats"]["bn"]["mean"]), before)
