"""Private flax details of variables: the type <-> collection registry, ToNNX's layout.

- ``collection_name`` / ``variable_type`` / ``is_registered_collection``:
  ``variable_name_from_type`` / ``variable_type_from_name`` of
  ``flax.nnx.variablelib`` (public functions of a module ``flax.nnx`` does not
  re-export; the layout ``flax.nnx.bridge`` uses).
- ``registered_collections``: ``flax.nnx.variablelib.VariableTypeCache`` (the
  names ``sow`` may target). Fallback: the collections of flax's own types.
- ``linen_vars_to_nnx`` / ``nnx_to_linen_vars``: the converters of
  ``flax.nnx.bridge.variables`` (``linen_vars_to_nnx_attrs`` /
  ``nnx_attrs_to_linen_vars``) that ``ToNNX`` uses, so that NNX wrappers of
  Linen modules keep ``ToNNX``'s layout and sharding metadata. No fallback.
- ``is_initializing``: ``Pytree._pytree__state.initializing``, what
  ``nnx.bridge.lazy_init`` sets (and ``ToNNX`` reads). Fallback: False.
- ``is_linen_bridge``: ``ToNNX`` keeps its Linen module in the attribute
  ``to_nnx__module`` and its variables in ``linen_vars_to_nnx``'s layout
  (nnxgen's NNX wrappers of Linen modules do the same). No fallback.
- ``variable_writes`` (a check only; relied on by ``_linen_wrapper.immutable``):
  every write a module makes to an ``nnx.Variable`` goes through
  ``Variable.set_value``, while ``nnx.merge``, the pytree unflatten and the
  write-back of NNX transforms (``update_from_state``) do not; a subclass with
  ``__slots__ = ()`` may replace a variable's ``__class__`` and is kept by
  ``nnx.split`` / ``nnx.merge``. No fallback.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx
from flax.nnx import variablelib
from flax.nnx.bridge import variables as bridge_variables

__all__ = [
    "TONNX_MODULE",
    "check_bridge_converters",
    "check_lazy_init_flag",
    "check_registry",
    "check_tonnx_layout",
    "check_variable_writes",
    "collection_name",
    "is_initializing",
    "is_linen_bridge",
    "is_registered_collection",
    "linen_vars_to_nnx",
    "nnx_to_linen_vars",
    "registered_collections",
    "variable_type",
]


def collection_name(var_type: type) -> str:
    """The Linen collection of an NNX variable type (registering a new type)."""
    return variablelib.variable_name_from_type(var_type, allow_register=True)


def is_registered_collection(name: str) -> bool:
    try:
        variable_type(name)
    except LookupError:
        return False
    return True


def registered_collections() -> tuple[str, ...]:
    """Every collection name in flax's variable-type registry."""
    cache = getattr(variablelib, "VariableTypeCache", None)
    if isinstance(cache, dict):
        return tuple(cache)
    return tuple(n for n in _FLAX_COLLECTIONS if is_registered_collection(n))


_FLAX_COLLECTIONS = ("batch_stats", "cache", "intermediates", "perturbations")


def variable_type(name: str) -> type:
    """The NNX variable type registered for collection ``name`` (LookupError if none)."""
    try:
        return variablelib.variable_type_from_name(name, allow_register=False)
    except ValueError:
        raise LookupError(name) from None


# ---------------------------------------------------------------------------
# flax.nnx.bridge's Linen <-> NNX variable converters, and lazy_init's flag.


def linen_vars_to_nnx(variables: Any) -> dict[str, Any]:
    """Linen ``{collection: tree}`` -> ``{attribute: Variable | dict}`` (ToNNX's layout)."""
    return bridge_variables.linen_vars_to_nnx_attrs(variables)


def nnx_to_linen_vars(attrs: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`linen_vars_to_nnx` (sharding metadata re-boxed)."""
    return bridge_variables.nnx_attrs_to_linen_vars(attrs)


def is_initializing(module: Any) -> bool:
    """Whether ``nnx.bridge.lazy_init`` is running ``module``."""
    state = getattr(module, "_pytree__state", None)
    return bool(getattr(state, "initializing", False))


# ---------------------------------------------------------------------------
# ToNNX's layout.


#: The attribute ``nnx.bridge.ToNNX`` (and nnxgen's NNX wrappers) hold the Linen module in.
TONNX_MODULE = "to_nnx__module"


def is_linen_bridge(node: Any) -> bool:
    """``node`` runs a Linen module in ToNNX's layout (``ToNNX`` or a generated
    NNX wrapper of a Linen module)."""
    return isinstance(node, nnx.Module) and TONNX_MODULE in vars(node)


# ---------------------------------------------------------------------------
# Checks.


def check_registry() -> bool:
    return (
        collection_name(nnx.Param) == "params"
        and variable_type("cache") is nnx.Cache
        and not is_registered_collection("nnxgen-not-a-collection")
    )


def check_bridge_converters() -> bool:
    linen = {
        "params": {"Dense_0": {"kernel": jnp.ones(2)}},
        "batch_stats": {"m": jnp.zeros(1)},
    }
    attrs = linen_vars_to_nnx(linen)
    back = nnx_to_linen_vars(attrs)
    return (
        type(attrs["Dense_0"]["kernel"]) is nnx.Param
        and type(attrs["m"]) is nnx.BatchStat
        and str(jax.tree.structure(back)) == str(jax.tree.structure(linen))
    )


def check_lazy_init_flag() -> bool:
    seen: list[bool] = []

    class Probe(nnx.Module):
        def __call__(self) -> None:
            seen.append(is_initializing(self))

    probe = Probe()
    probe()
    nnx.bridge.lazy_init(probe)
    return seen == [False, True] and not is_initializing(probe)


def check_tonnx_layout() -> bool:
    bridge = nnx.bridge.ToNNX(nn.Dense(2), rngs=nnx.Rngs(0))
    lazy_init: Any = nnx.bridge.lazy_init  # untyped in some flax releases
    lazy_init(bridge, jnp.ones((1, 3)))
    return is_linen_bridge(bridge) and type(vars(bridge).get("kernel")) is nnx.Param


def check_variable_writes() -> bool:
    seen: list[str] = []

    class Probe(nnx.BatchStat):  # type: ignore[type-arg]
        __slots__ = ()

        def set_value(self, value: Any, **kwargs: Any) -> None:
            seen.append("write")
            super().set_value(value, **kwargs)

    class M(nnx.Module):
        def __init__(self) -> None:
            self.v = nnx.BatchStat(jnp.zeros(2))

    m = M()
    m.v.__class__ = Probe
    graphdef, state = nnx.split(m)
    m2 = nnx.merge(graphdef, state)
    kept = type(m2.v) is Probe
    m2.v.update_from_state(nnx.BatchStat(jnp.ones(2)))
    quiet = not seen
    m2.v[...] = jnp.ones(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # `.value` (0.12.12)
        m2.v.value = jnp.ones(2)
    m2.v.set_value(jnp.ones(2))
    return kept and quiet and seen == ["write"] * 3
