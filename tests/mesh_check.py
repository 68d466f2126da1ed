"""Run in a subprocess with 8 simulated CPU devices (see tests/test_scale.py).

Initialises a generated wrapper under jax.jit with out_shardings derived from its
partition specs, checks every parameter is laid out as annotated, runs a jitted,
sharded train step (grad + optax) and compares with the unsharded result.
Prints one JSON line with what it measured.
"""

from __future__ import annotations

import json
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def main(wrapper_module: str) -> None:
    mod = __import__(wrapper_module)
    devices = jax.devices()
    assert len(devices) == 8, devices
    mesh = Mesh(np.array(devices).reshape(4, 2), ("data", "model"))
    model = mod.ShardedMLP(din=8, dmid=16, dout=4)
    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (16, 8))
    y = jax.random.normal(jax.random.key(2), (16, 4))

    with nnx.use_eager_sharding(False):
        abstract = jax.eval_shape(model.init, key, x)
        specs = nn.get_partition_spec(abstract)
        shardings = jax.tree.map(
            lambda spec: NamedSharding(mesh, spec),
            specs,
            is_leaf=lambda s: isinstance(s, PartitionSpec),
        )  # nn.Partitioned names are mesh axes
        init_sharded = jax.jit(model.init, out_shardings=shardings)
        variables = init_sharded(key, x)
        plain = model.init(key, x)  # unsharded, same key

        laid_out = {
            "/".join(str(getattr(k, "key", k)) for k in path): str(leaf.value.sharding.spec)
            for path, leaf in jax.tree_util.tree_flatten_with_path(
                variables, is_leaf=lambda b: isinstance(b, nn.Partitioned)
            )[0]
        }
        annotated = {
            "/".join(str(getattr(k, "key", k)) for k in path): str(PartitionSpec(*leaf.names))
            for path, leaf in jax.tree_util.tree_flatten_with_path(
                abstract, is_leaf=lambda b: isinstance(b, nn.Partitioned)
            )[0]
        }

        tx = optax.sgd(0.1)

        def loss_fn(params, x, y):
            pred = model.apply({"params": params}, x)
            return jnp.mean((pred - y) ** 2)

        def step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        sharded_params = variables["params"]
        p_sh = jax.tree.map(lambda b: b, sharded_params)
        step_sharded = jax.jit(step)
        opt = tx.init(p_sh)
        replicated = NamedSharding(mesh, PartitionSpec())
        xs, ys = jax.device_put(x, replicated), jax.device_put(y, replicated)
        for _ in range(3):
            p_sh, opt, loss_sh = step_sharded(p_sh, opt, xs, ys)

        p_1 = jax.device_put(nn.unbox(plain["params"]), devices[0])
        opt1 = tx.init(p_1)
        step_one = jax.jit(step)
        x1, y1 = jax.device_put(x, devices[0]), jax.device_put(y, devices[0])
        for _ in range(3):
            p_1, opt1, loss_1 = step_one(p_1, opt1, x1, y1)

        same_init = all(
            bool(np.allclose(np.asarray(a), np.asarray(b), atol=1e-6))
            for a, b in zip(jax.tree.leaves(nn.unbox(variables)), jax.tree.leaves(nn.unbox(plain)))
        )
        max_diff = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree.leaves(nn.unbox(p_sh)), jax.tree.leaves(p_1))
        )
        kernel_sharding = nn.unbox(p_sh)["up"]["kernel"].sharding.spec
    print(
        json.dumps(
            {
                "devices": len(devices),
                "laid_out": laid_out,
                "annotated": annotated,
                "same_init": same_init,
                "loss_sharded": float(loss_sh),
                "loss_single": float(loss_1),
                "max_param_diff": max_diff,
                "kernel_after_step": str(kernel_sharding),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
