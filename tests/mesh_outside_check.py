"""Run in a subprocess with 4 simulated CPU devices (see tests/test_mesh_outside.py).

flax's eager sharding on (its default): a generated wrapper is initialised under
``jax.set_mesh(mesh)`` and applied outside any mesh, eagerly and under
``jax.jit``, as pure NNX does (``nnx.split`` under the mesh, ``nnx.merge`` + call
outside it); and a restored checkpoint of a configuration whose layout was never
built under a mesh is applied outside one. Prints one JSON line with what it
measured. The NNX modules are defined here; the test wraps this module.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_init = nnx.initializers.lecun_normal()


class ShardedNet(nnx.Module):
    """Linear with a (None, 'model') kernel, then BatchNorm with a ('model',) scale."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.lin = nnx.Linear(
            din,
            dout,
            kernel_init=nnx.with_partitioning(_init, (None, "model")),
            bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("model",)),
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(
            dout,
            scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("model",)),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.lin(x))


class Mixed(nnx.Module):
    """An annotated parameter sharded eagerly by default, and one that opts out."""

    def __init__(self, d: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(
            jax.random.normal(rngs.params(), (d, d)), out_sharding=(None, "model")
        )
        self.u = nnx.Param(
            jnp.ones((d,)), out_sharding=("model",), eager_sharding=False
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w[...] + self.u[...]


def _key(k: Any) -> str:
    return str(getattr(k, "key", getattr(k, "idx", k)))


def _flat(tree: Any, fn: Any, is_leaf: Any = None) -> dict[str, str]:
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
    return {"/".join(_key(k) for k in path): fn(leaf) for path, leaf in leaves}


def _specs(variables: Any) -> dict[str, str]:
    """The Linen boxes' partition specs."""
    return _flat(
        nn.get_partition_spec(variables),
        str,
        is_leaf=lambda s: isinstance(s, PartitionSpec),
    )


def _shardings(variables: Any) -> dict[str, str]:
    """Where each value is laid out (the spec of its NamedSharding)."""
    return _flat(nn.unbox(variables), lambda a: str(a.sharding.spec))


def _nnx_specs(state: Any) -> dict[str, str]:
    return _flat(
        nnx.to_pure_dict(nnx.get_partition_spec(state)),
        str,
        is_leaf=lambda s: isinstance(s, PartitionSpec),
    )


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and k in out else v
    return out


def _pure_state(state: Any, variables: Any) -> Any:
    """``state`` (pure NNX, split under the mesh) holding the wrapper's values."""
    values: dict[str, Any] = {}
    for tree in nn.unbox(variables).values():
        values = _merge(values, jax.tree.map(lambda a: a, dict(tree)))
    state = jax.tree.map(lambda a: a, state)  # a copy
    state.replace_by_pure_dict(values)
    return state


def _diff(a: Any, b: Any) -> float:
    return max(
        float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def main(wrapper_module: str) -> None:
    from nnxgen import runtime as rt
    from nnxgen.runtime._linen_wrapper.keys import key_of
    from nnxgen.runtime._linen_wrapper.layout_cache import CACHE, entry_for

    mod = importlib.import_module(wrapper_module)
    devices = jax.devices()
    mesh = Mesh(np.array(devices).reshape(2, 2), ("data", "model"))
    out: dict[str, Any] = {
        "devices": len(devices),
        "eager_default": bool(nnx.using_eager_sharding()),
    }
    x = jax.random.normal(jax.random.key(1), (4, 6))
    key = jax.random.key(0)
    model = mod.ShardedNet(6, 8)
    NnxNet = type(model).__nnxgen__.nnx_class

    # 1. init under the mesh; pure NNX split under the mesh.
    with jax.set_mesh(mesh):
        variables = model.init(key, x, train=False)
        abstract = jax.eval_shape(functools.partial(model.init, train=False), key, x)
        pure = NnxNet(6, 8, rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(pure)
    out["specs"] = _specs(variables)
    out["abstract_specs"] = _specs(abstract)
    out["shardings"] = _shardings(variables)
    out["pure_specs"] = _nnx_specs(state)
    out["pure_shardings"] = _flat(
        nnx.to_pure_dict(state), lambda a: str(a.sharding.spec)
    )
    out["layout_built_by_init"] = key_of(model) in CACHE

    # 2. apply outside any mesh, eager and jitted, against pure NNX.
    assert jax.sharding.get_abstract_mesh().empty
    ref_state = _pure_state(state, variables)

    def pure_eval(s: Any, x: jax.Array) -> jax.Array:
        m = nnx.merge(graphdef, s)
        m.eval()
        return m(x)

    def pure_train(s: Any, x: jax.Array) -> tuple[jax.Array, Any]:
        m = nnx.merge(graphdef, s)
        m.train()
        return m(x), nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))

    def train(v: Any, x: jax.Array) -> Any:
        return model.apply(v, x, train=True, mutable=["batch_stats"])

    y_ref = pure_eval(ref_state, x)
    out["pure_jit_diff"] = _diff(jax.jit(pure_eval)(ref_state, x), y_ref)
    out["eval_eager_diff"] = _diff(model.apply(variables, x, train=False), y_ref)
    apply_eval = jax.jit(functools.partial(model.apply, train=False))
    out["eval_jit_diff"] = _diff(apply_eval(variables, x), y_ref)
    yt_ref, stats_ref = pure_train(_pure_state(state, variables), x)
    for name, fn in (("eager", train), ("jit", jax.jit(train))):
        yt, updates = fn(variables, x)
        out[f"train_{name}_diff"] = max(
            _diff(yt, yt_ref), _diff(updates["batch_stats"], stats_ref)
        )

    # 3. the layout built outside the mesh is pure NNX's (graph definitions,
    # metadata, partition specs of the module apply runs).
    entry = entry_for(model)
    pure.train()
    same = entry.graphdefs[True] == nnx.graphdef(pure)
    pure.eval()
    out["same_graphdefs"] = same and entry.graphdefs[False] == nnx.graphdef(pure)
    live = rt.to_nnx(model, variables, train=False)
    out["live_specs"] = _nnx_specs(nnx.state(live))
    out["live_eager_sharding"] = sorted(
        {
            str(v.get_metadata().get("eager_sharding"))
            for _, v in nnx.to_flat_state(nnx.state(live))
        }
    )

    # 4. init under the mesh again, after the layout was built outside it.
    with jax.set_mesh(mesh):
        again = model.init(key, x, train=False)
    out["specs_again"] = _specs(again)
    out["shardings_again"] = _shardings(again)
    out["init_again_diff"] = _diff(nn.unbox(again), nn.unbox(variables))

    # 5. a restored checkpoint of a configuration whose layout was never
    # built (as in a fresh process that only applies): host arrays, and
    # arrays laid out on the mesh as a sharded restore places them.
    fresh = mod.ShardedNet(6, 4)
    with jax.set_mesh(mesh):
        fresh_vars = fresh.init(key, x, train=False)
        fresh_pure = nnx.split(NnxNet(6, 4, rngs=nnx.Rngs(0)))
    out["fresh_layout_cached"] = key_of(fresh) in CACHE
    restored = serialization.msgpack_restore(
        serialization.to_bytes(nn.unbox(fresh_vars))
    )
    shardings = jax.tree.map(
        lambda spec: NamedSharding(mesh, spec),
        nn.get_partition_spec(fresh_vars),
        is_leaf=lambda s: isinstance(s, PartitionSpec),
    )
    placed = jax.device_put(restored, shardings)
    fg, fs = fresh_pure
    m = nnx.merge(fg, _pure_state(fs, fresh_vars))
    m.eval()
    y_ref = m(x)
    fresh_eval = jax.jit(functools.partial(fresh.apply, train=False))
    out["restored_jit_diff"] = _diff(fresh_eval(restored, x), y_ref)
    out["restored_eager_diff"] = _diff(fresh.apply(restored, x, train=False), y_ref)
    out["placed_jit_diff"] = _diff(fresh_eval(placed, x), y_ref)

    # 6. an explicit eager_sharding=False keeps its metadata in the layout.
    mixed = mod.Mixed(8)
    with jax.set_mesh(mesh):
        mixed_vars = mixed.init(key, x @ jnp.ones((6, 8)))
        mixed_pure = type(mixed).__nnxgen__.nnx_class(8, rngs=nnx.Rngs(0))
    y = mixed.apply(mixed_vars, x @ jnp.ones((6, 8)))
    mixed_layout = entry_for(mixed).graphdefs[True]
    out["mixed_same_graphdef"] = mixed_layout == nnx.graphdef(mixed_pure)
    out["mixed_finite"] = bool(jnp.all(jnp.isfinite(y)))
    out["mixed_specs"] = _specs(mixed_vars)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
