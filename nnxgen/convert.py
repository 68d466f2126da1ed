"""Move checkpoints from other NNX->Linen wrappers to nnxgen's layout.

nnxgen stores exactly what ``flax.nnx.bridge.to_linen`` stores, so bridge
checkpoints need no conversion (:func:`from_bridge` only checks the shape of
the tree). Kauldron's ``linen_from_nnx`` keeps ``nnx.Variable`` objects under
``params`` plus an ``nnx`` collection (``graphdef`` / ``rng_vars`` /
``attributes``); :func:`from_linen_from_nnx` turns that into Linen
collections named by flax's variable-type registry. It is tested on variables
made and trained by the real ``kauldron.contrib.modules.linen_from_nnx``
(kauldron 1.4.2 and 1.4.4: tests/test_linen_from_nnx.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx
from flax.core import meta

from nnxgen.runtime._linen_wrapper.state import collection_of as _collection_of

__all__ = ["from_bridge", "from_linen_from_nnx"]


def from_bridge(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables saved by ``flax.nnx.bridge.to_linen``: the same layout, returned as is."""
    if "nnx" in variables:
        raise ValueError(
            "these variables have an 'nnx' collection: they come from Kauldron's "
            "linen_from_nnx, not from flax.nnx.bridge; use from_linen_from_nnx"
        )
    return dict(variables)


def _is_var(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _is_value_dict(x: Any) -> bool:
    return isinstance(x, Mapping) and set(x) == {"value"}


def _leaves(tree: Any):
    """(path keys, leaf) pairs; a leaf is a Variable, a {'value': x} dict or an array."""
    flat = jax.tree_util.tree_flatten_with_path(
        tree,
        is_leaf=lambda x: (
            _is_var(x) or _is_value_dict(x) or isinstance(x, meta.AxisMetadata)
        ),
    )[0]
    for path, leaf in flat:
        yield tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path), leaf


def _key(k: Any) -> Any:
    if isinstance(k, str) and k.isdigit():
        return int(k)
    return k


def _collections_by_path(like: Mapping[str, Any]) -> dict[tuple, str]:
    out = {}
    for col, tree in like.items():
        for path, _ in _leaves(tree):
            out[tuple(map(_key, path))] = col
    return out


def from_linen_from_nnx(
    variables: Mapping[str, Any], *, like: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Convert Kauldron ``linen_from_nnx`` variables to nnxgen's (= the bridge's) layout.

    ``variables``: ``{'params': ..., 'nnx': {'graphdef', 'rng_vars', 'attributes'}}``
    with ``nnx.Variable`` leaves, or, after an Orbax restore without a target,
    ``{'value': array}`` leaves. In the latter case the variable types are lost:
    pass ``like=`` (e.g. ``jax.eval_shape(model.init, key, x)`` of the generated
    wrapper) so each non-param leaf goes to the right collection. Rng state is
    dropped (nnxgen refills it from Linen's rng streams).
    """
    if "params" not in variables:
        raise ValueError("expected a 'params' collection in linen_from_nnx variables")
    lookup = _collections_by_path(like) if like is not None else None
    out: dict[str, Any] = {}

    def put(col: str, path: tuple, value: Any) -> None:
        node = out.setdefault(col, {})
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value

    sources = [("params", variables["params"])]
    extra = variables.get("nnx", {})
    if isinstance(extra, Mapping) and extra.get("attributes") is not None:
        sources.append(("attributes", extra["attributes"]))
    for where, tree in sources:
        for raw_path, leaf in _leaves(tree):
            path = tuple(map(_key, raw_path))
            if _is_var(leaf):
                col = _collection_of(type(leaf))
                value = leaf.get_value()
            else:
                value = leaf["value"] if _is_value_dict(leaf) else leaf
                if where == "params":
                    col = "params"
                elif lookup is not None and path in lookup:
                    col = lookup[path]
                else:
                    raise ValueError(
                        f"cannot tell which collection nnx/attributes/{'/'.join(map(str, path))} "
                        "belongs to (its variable type was lost, e.g. by an Orbax restore without "
                        "a target): pass like=jax.eval_shape(model.init, key, x) (bind train= with functools.partial)"
                    )
            put(col, path, value)
    return out
