"""Linen variables <-> NNX state: gathering, checking and writing back.

Layout: each NNX variable is stored in the Linen collection that flax's
variable-type registry names for its type (``Param`` -> ``params``,
``BatchStat`` -> ``batch_stats``, ``Cache`` -> ``cache``; raw arrays ->
``ArrayImpl``), at its NNX attribute path -- exactly ``flax.nnx.bridge``'s
layout. Rng state is never stored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx
from flax.core import meta

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._linen_wrapper.boxing import boxer
from nnxgen.runtime._linen_wrapper.layout import Entry

#: Collection of raw-array (non-Variable) state, as flax.nnx.bridge names it.
RAW_ARRAY_COLLECTION = "ArrayImpl"


@functools.cache
def collection_of(var_type: type) -> str:
    """The Linen collection of an NNX variable type (raw arrays: ``ArrayImpl``)."""
    if not issubclass(var_type, nnx.Variable):
        return RAW_ARRAY_COLLECTION
    # a read-only stand-in (:mod:`.immutable`) belongs to its base type's collection
    var_type = getattr(var_type, "_nnxgen_base", var_type)
    return _compat.collection_name(var_type)


def path_str(collection: str, path: Sequence[Any]) -> str:
    return "/".join([collection, *map(str, path)])


def _lookup(tree: Any, key: Any) -> Any:
    """``tree[key]``, accepting the string form of integer keys (msgpack round trips)."""
    try:
        return tree[key]
    except (KeyError, TypeError):
        if isinstance(key, int):
            return tree[str(key)]
        raise


def _unbox(x: Any) -> Any:
    return x.unbox() if isinstance(x, meta.AxisMetadata) else x


def _count_leaves(tree: Any) -> int:
    return len(
        jax.tree_util.tree_leaves(
            tree, is_leaf=lambda x: isinstance(x, meta.AxisMetadata)
        )
    )


def gather_state(
    cls_name: str, entry: Entry, variables: Mapping[str, Any]
) -> dict[Any, Any]:
    """Nested pure-value state for ``nnx.merge``, checked against the cached layout."""
    state: dict[Any, Any] = {}
    for leaf in entry.leaves:
        try:
            tree = variables[leaf.collection]
            for k in leaf.path:
                tree = _lookup(tree, k)
        except (KeyError, TypeError, IndexError):
            raise NnxgenError(
                f"{cls_name}: variable {path_str(leaf.collection, leaf.path)} is missing "
                f"(expected shape {leaf.shape}); pass the variables returned by "
                f"{cls_name}(...).init with the same constructor arguments."
            ) from None
        value = _unbox(tree)
        if isinstance(value, np.ndarray):
            # NNX updates state in place (BatchNorm statistics): never write
            # into the caller's host arrays.
            value = jnp.asarray(value)
        shape = getattr(value, "shape", None)
        if shape is not None and tuple(shape) != leaf.shape:
            raise NnxgenError(
                f"{cls_name}: variable {path_str(leaf.collection, leaf.path)} has shape "
                f"{tuple(shape)} but the module expects {leaf.shape}; the checkpoint was "
                f"made with other constructor arguments."
            )
        node = state
        for k in leaf.path[:-1]:
            node = node.setdefault(k, {})
        node[leaf.path[-1]] = value
    return state


def unexpected(
    cls_name: str, entry: Entry, variables: Mapping[str, Any]
) -> list[tuple[str, tuple[Any, ...], Any]]:
    """Variables that the cached layout lacks, as ``(collection, path, value)``.

    Empty when the variables have the layout of ``entry`` (the usual apply:
    one leaf count per collection). A collection that no NNX variable type is
    registered under raises here; whether the rest can belong to the module
    (state a method created after construction) is decided by :func:`attach`.
    """
    extras: list[tuple[str, tuple[Any, ...], Any]] = []
    for col, tree in variables.items():
        expected = entry.counts.get(col)
        if expected is None:
            if col == "intermediates":
                continue
            if not _compat.is_registered_collection(col):
                raise NnxgenError(
                    f"{cls_name}: unknown variable collection {col!r} (the module has "
                    f"{list(entry.collections)}); drop it from the variables, or "
                    f"convert checkpoints of other wrappers with nnxgen.convert."
                )
        elif _count_leaves(tree) == expected:
            continue
        known = {
            tuple(map(str, leaf.path))
            for leaf in entry.leaves
            if leaf.collection == col
        }
        extras.extend(
            (col, p, _unbox(v))
            for p, v in _flat_items(tree)
            if tuple(map(str, p)) not in known
        )
    return extras


def _flat_items(
    tree: Any, prefix: tuple[Any, ...] = ()
) -> Iterable[tuple[tuple[Any, ...], Any]]:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _flat_items(v, (*prefix, k))
    else:
        yield prefix, tree


def node_at(module: Any, path: Sequence[Any]) -> Any:
    """The node (submodule, variable, raw array) at a state path of ``module``."""
    node = module
    for k in path:
        if isinstance(node, Mapping) or not isinstance(k, str):
            node = node[k]
        else:
            node = getattr(node, k)
    return node


def flat_state(module: Any) -> list[tuple[str, tuple[Any, ...], Any]]:
    """``(collection, path, variable)`` for the NNX module's non-rng state."""
    return [
        (collection_of(var.__class__), tuple(path), var)
        for path, var in nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.RngState)))
    ]


def write_back(linen: nn.Module, module: Any) -> None:
    """Store the NNX module's (non-rng) state in the mutable Linen collections."""
    put(linen, flat_state(module))


def put(linen: nn.Module, flat: Iterable[tuple[str, tuple[Any, ...], Any]]) -> None:
    """Store ``(collection, path, variable)`` in the mutable Linen collections, boxed."""
    grouped: dict[str, dict[tuple[Any, ...], Any]] = {}
    box = boxer(linen)
    mutable: dict[str, bool] = {}
    for col, path, var in flat:
        ok = mutable.get(col)
        if ok is None:
            ok = mutable[col] = linen.is_mutable_collection(col)
        if ok:
            grouped.setdefault(col, {})[path] = box(var)
    for col, flat_col in grouped.items():
        tree = nnx.traversals.unflatten_mapping(flat_col)
        for k, v in tree.items():
            if col == "intermediates" and linen.has_variable(col, k):
                # Linen's sow semantics: values sown by earlier calls are kept.
                v = _append_sown(linen.get_variable(col, k), v)
            linen.put_variable(col, k, v)


def _append_sown(old: Any, new: Any) -> Any:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return {
            **old,
            **{k: _append_sown(old[k], v) if k in old else v for k, v in new.items()},
        }
    if isinstance(old, tuple) and isinstance(new, tuple):
        return old + new
    return new
