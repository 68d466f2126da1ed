"""How NNX variables are boxed in Linen (sharding metadata -> Linen boxes)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from flax import linen as nn
from flax import nnx

__all__ = ["default_metadata_fn", "metadata_fn"]


def default_metadata_fn(var: Any) -> Any:
    """How an NNX variable is stored in Linen: a raw array, or a Linen box.

    A variable annotated with sharding names (``nnx.with_partitioning``, the
    ``out_sharding`` metadata) becomes ``nn.Partitioned`` (mesh axis names), or
    ``nn.LogicallyPartitioned`` when it carries ``sharding_rules`` (logical
    names). Linen's own tools then work on the wrapper's variables
    (``nn.get_partition_spec``, ``nn.logical_to_mesh_sharding``, ``nn.unbox``,
    also on ``jax.eval_shape(model.init, ...)``), and ``nn.vmap`` / ``nn.scan``
    with ``metadata_params={nn.PARTITION_NAME: ...}`` add the stacked axis.
    Anything else is stored as its raw value, as ``flax.nnx.bridge`` does.
    """
    if not isinstance(var, nnx.Variable):
        return var
    value = var.get_value()
    meta_ = var.get_metadata()
    names = (
        meta_.get("out_sharding")
        or meta_.get("sharding_names")
        or meta_.get("sharding")
    )
    if (
        names
        and isinstance(names, (tuple, list))
        and len(names) == getattr(value, "ndim", -1)
    ):
        rules = meta_.get("sharding_rules")
        if rules:
            return nn.LogicallyPartitioned(
                value, tuple(names), mesh=meta_.get("mesh"), rules=tuple(rules)
            )
        return nn.Partitioned(value, tuple(names), mesh=meta_.get("mesh"))
    return value


_metadata_fn_stack: list[Callable[[Any], Any]] = []


@contextlib.contextmanager
def metadata_fn(fn: Callable[[Any], Any]) -> Iterator[Callable[[Any], Any]]:
    """Box variables with ``fn(variable)`` instead of :func:`default_metadata_fn`.

    (For projects that box differently, e.g. into ``nn.LogicallyPartitioned``
    with their own rules.) A wrapper class may also set
    ``__nnxgen_metadata_fn__ = staticmethod(fn)`` in a subclass.
    """
    _metadata_fn_stack.append(fn)
    try:
        yield fn
    finally:
        _metadata_fn_stack.pop()


def boxer(linen: nn.Module) -> Callable[[Any], Any]:
    """How ``linen``'s variables are boxed: its class's, the innermost, or the default."""
    fn: Callable[[Any], Any] | None = getattr(
        type(linen), "__nnxgen_metadata_fn__", None
    )
    if fn is not None:
        return fn
    return _metadata_fn_stack[-1] if _metadata_fn_stack else default_metadata_fn
