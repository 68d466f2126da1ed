"""One process of a multi-controller SPMD run (see tests/test_multihost.py, docs/scale.md).

Run as ``python tests/multihost_worker.py WRAPPER_MODULE OUT_DIR --processes N
--process-id I --port P [--save CKPT] [--restore CKPT]`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=D``: N processes of D CPU devices
each form one global mesh (CPU collectives over gloo, coordinator on 127.0.0.1).
Every process builds the generated Linen wrapper of ``Net`` (defined here; the test
wraps this module), initialises it sharded from its partition specs, feeds its own
slice of one global batch with ``jax.make_array_from_process_local_data`` and runs
three optax steps (BatchNorm statistics, dropout). Process 0 writes what it measured
to ``OUT_DIR/result.json``; ``--save`` writes an orbax checkpoint of the final
variables (every process takes part), ``--restore`` reads one back onto this run's
mesh. The numbers are the same on any topology: that is what the test checks.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec

DIN, DMID, DOUT, BATCH, STEPS = 8, 16, 4, 16, 3
_P = nnx.with_partitioning


class Net(nnx.Module):
    """Linear -> BatchNorm -> relu -> Dropout -> Linear, kernels on ('data', 'model')."""

    def __init__(self, din: int, dmid: int, dout: int, *, dropout_rate: float = 0.25,
                 rngs: nnx.Rngs):  # fmt: skip
        self.up = nnx.Linear(  # no bias before BatchNorm: its gradient is 0 (adam: noise)
            din, dmid, use_bias=False, rngs=rngs,
            kernel_init=_P(nnx.initializers.lecun_normal(), ("data", "model")),
        )  # fmt: skip
        self.bn = nnx.BatchNorm(
            dmid, rngs=rngs,
            scale_init=_P(nnx.initializers.ones_init(), ("model",)),
            bias_init=_P(nnx.initializers.zeros_init(), ("model",)),
        )  # fmt: skip
        self.drop = nnx.Dropout(dropout_rate, rngs=rngs)
        self.down = nnx.Linear(
            dmid, dout, use_bias=False, rngs=rngs,
            kernel_init=_P(nnx.initializers.lecun_normal(), ("model", "data")),
        )  # fmt: skip

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(self.drop(nnx.relu(self.bn(self.up(x)))))


def global_batch() -> tuple[np.ndarray, np.ndarray]:
    """The global batch every topology trains on (a data loader's job in real life)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, DIN)).astype(np.float32)
    y = rng.normal(size=(BATCH, DOUT)).astype(np.float32)
    return x, y


def _key(k: Any) -> str:
    return str(getattr(k, "key", getattr(k, "idx", k)))


def _flat(tree: Any, fn: Any, is_leaf: Any = None) -> dict[str, Any]:
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
    return {"/".join(_key(k) for k in path): fn(leaf) for path, leaf in leaves}


def _spec(s: Any) -> str:
    return str(s).replace("PartitionSpec(", "P(")


def _host_values(tree: Any) -> dict[str, Any]:
    """Global arrays gathered to every host (``process_allgather``), as nested lists."""
    host = multihost_utils.process_allgather(nn.unbox(tree), tiled=True)
    return _flat(host, lambda a: np.asarray(a, np.float64).tolist())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("wrapper")
    p.add_argument("out")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--save")
    p.add_argument("--restore")
    args = p.parse_args()

    # 1. One process per host, one global mesh over every host's devices.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.processes > 1:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            coordinator_bind_address=f"127.0.0.1:{args.port}",
            num_processes=args.processes,
            process_id=args.process_id,
            initialization_timeout=60,
        )
    n = jax.device_count()  # global: every process's devices
    shape = (n // 2, 2) if n > 1 else (1, 1)
    mesh = jax.make_mesh(shape, ("data", "model"), axis_types=(AxisType.Auto,) * 2)

    # 2. Data: each process holds its rows of the global batch.
    x_all, y_all = global_batch()
    rows = BATCH // jax.process_count()
    mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    x = jax.make_array_from_process_local_data(batch_sharding, x_all[mine], x_all.shape)
    y = jax.make_array_from_process_local_data(batch_sharding, y_all[mine], y_all.shape)

    # 3. Sharded init from the partition specs on the Linen variables.
    wrappers = importlib.import_module(args.wrapper)
    model = wrappers.Net(din=DIN, dmid=DMID, dout=DOUT)
    init = functools.partial(model.init, train=False)
    key = jax.random.key(0)
    with jax.set_mesh(mesh):
        abstract = jax.eval_shape(init, key, x)  # nn.Partitioned boxes, no memory
        shardings = jax.tree.map(
            lambda spec: NamedSharding(mesh, spec),
            nn.get_partition_spec(abstract),
            is_leaf=lambda s: isinstance(s, PartitionSpec),
        )
        variables = jax.jit(init, out_shardings=shardings)(key, x)
    params, batch_stats = variables["params"], variables["batch_stats"]

    # 4. Train: jit over global arrays; BatchNorm and dropout see the global batch.
    tx = optax.adam(1e-2)
    dropout_key = jax.random.key(1)

    def loss_fn(params, batch_stats, x, y, step):
        pred, updates = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True,
            rngs={"dropout": jax.random.fold_in(dropout_key, step)},
            mutable=["batch_stats"],
        )  # fmt: skip
        return jnp.mean((pred - y) ** 2), updates["batch_stats"]

    @jax.jit
    def train_step(params, batch_stats, opt_state, x, y, step):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, x, y, step
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    losses = []
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init)(params)
        for step in range(STEPS):
            params, batch_stats, opt_state, loss = train_step(
                params, batch_stats, opt_state, x, y, step
            )
            losses.append(float(loss))  # a replicated scalar: readable on every host
    final = {"params": params, "batch_stats": batch_stats}
    evaluate = jax.jit(functools.partial(model.apply, train=False))
    with jax.set_mesh(mesh):
        pred = evaluate(final, x)

    out: dict[str, Any] = {
        "process_count": jax.process_count(),
        "device_count": n,
        "local_device_count": jax.local_device_count(),
        "mesh": dict(mesh.shape),
        "batch_rows_here": sorted(
            {r for s in x.addressable_shards for r in range(BATCH)[s.index[0]]}
        ),
        "annotated": _flat(
            nn.get_partition_spec(abstract),
            _spec,
            is_leaf=lambda s: isinstance(s, PartitionSpec),
        ),
        "laid_out": _flat(nn.unbox(variables), lambda a: _spec(a.sharding.spec)),
        "after_training": _flat(nn.unbox(final), lambda a: _spec(a.sharding.spec)),
        "losses": losses,
        "final": _host_values(final),
        "eval": _host_values(pred)[""],
    }

    # 5. Checkpoints: every process writes its shards; any topology reads them back.
    import orbax.checkpoint as ocp

    if args.save:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(args.save, nn.unbox(final))
    if args.restore:
        # the abstract init, laid out on this run's mesh, is the restore target
        target = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            nn.unbox(abstract), shardings,
        )  # fmt: skip
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(args.restore, target)
        out["restored"] = _host_values(restored)
        out["restored_laid_out"] = _flat(restored, lambda a: _spec(a.sharding.spec))
        with jax.set_mesh(mesh):
            pred = evaluate(restored, x)
        out["restored_eval"] = _host_values(pred)[""]

    if jax.process_index() == 0:
        with open(f"{args.out}/result.json", "w", encoding="utf-8") as f:
            json.dump(out, f)
    if args.processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
