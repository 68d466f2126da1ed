"""Attach variables that a method created after construction to a built module.

A cache made by ``init_cache`` or a lazily created parameter is not in the
layout traced from the constructor; :mod:`.layout_cache` extends the layout by
building the module again and attaching them by path (:func:`attach`), also
below a Linen module run in ``ToNNX``'s layout. Anything that cannot belong to
the module is an error naming the path.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._linen_wrapper.state import path_str

__all__ = ["attach"]


def attach(
    module: Any, col: str, path: tuple[Any, ...], value: Any, cls_name: str
) -> None:
    """Add a variable that a method created after construction (an ``init_cache``
    cache, a lazily created parameter) to a freshly built module.

    Only where such a variable can have come from: a registered collection
    (``cache``, ``params``, ...), an array, and a path whose parent is a module
    (or other ``nnx.Pytree``) that has no such attribute yet or holds ``None``
    there (``MultiHeadAttention`` keeps ``cached_key = None`` until
    ``init_cache``). Anything else is reported as not belonging to the module.
    """
    try:
        var_type = _compat.variable_type(col)
    except LookupError:
        raise NnxgenError(
            f"{cls_name}: unknown variable collection {col!r}; drop it from the "
            f"variables, or convert checkpoints of other wrappers with nnxgen.convert."
        ) from None
    parent = module
    try:
        for i, k in enumerate(path[:-1]):
            if _compat.is_linen_bridge(parent) and isinstance(k, str):
                # A Linen module inside NNX (``nnx.bridge.ToNNX`` or an nnxgen NNX
                # wrapper) made its variables on its first call: ToNNX's layout,
                # nested dicts under the attribute named by the first path element.
                _attach_bridged(parent, var_type, path[i:], value, cls_name, col, path)
                return
            if (
                isinstance(parent, nnx.Pytree)
                and isinstance(k, str)
                and not k.isdigit()
            ):
                parent = getattr(parent, k)
            else:
                parent = parent[int(k) if isinstance(k, str) and k.isdigit() else k]
    except (AttributeError, KeyError, IndexError, TypeError):
        parent = None
    name = path[-1]
    if (
        not isinstance(parent, nnx.Pytree)
        or not isinstance(name, str)
        or getattr(parent, name, None) is not None
        or not hasattr(value, "shape")
    ):
        raise _unknown_variables(cls_name, col, path)
    setattr(parent, name, var_type(jnp.zeros(value.shape, value.dtype)))


def _unknown_variables(cls_name: str, col: str, path: tuple[Any, ...]) -> NnxgenError:
    return NnxgenError(
        f"{cls_name}: unknown variables {path_str(col, path)}; the module has "
        f"no such state. Pass variables made by {cls_name}(...).init."
    )


def _attach_bridged(
    bridge: Any,
    var_type: Any,
    rest: tuple[Any, ...],
    value: Any,
    cls_name: str,
    col: str,
    path: tuple[Any, ...],
) -> None:
    """:func:`attach` below a Linen module run in ToNNX's layout: the variable
    at ``rest`` (an attribute, then at least one nested dict key), as
    ``linen_vars_to_nnx`` places it. (A variable directly on the attribute is
    ``attach``'s own case: its parent is the bridge module.)"""
    name, *inner = map(str, rest)
    current = vars(bridge).get(name)
    tree = dict(current) if isinstance(current, dict) else {}
    node = tree
    for k in inner[:-1]:
        node = node.setdefault(k, {})
    if inner[-1] in node or not hasattr(value, "shape"):
        raise _unknown_variables(cls_name, col, path)
    node[inner[-1]] = var_type(jnp.zeros(value.shape, value.dtype))
    setattr(bridge, name, nnx.data(tree))
