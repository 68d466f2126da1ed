"""NNX wrappers of Linen modules: the Linen variables written back into the wrapper.

Layout: exactly ``flax.nnx.bridge.ToNNX`` + ``lazy_init`` (the same converters,
``_compat.linen_vars_to_nnx``): each Linen variable becomes the NNX variable
flax's registry names for its collection, under the attribute named by its
first path element (nested dicts below). Existing variables are updated in
place (:func:`store`), so references held elsewhere see the new values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import NnxgenError

__all__ = ["state_attributes", "store"]


def _is_state(value: Any) -> bool:
    if isinstance(value, nnx.Variable):
        return True
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(_is_state(v) for v in value.values())
    )


def state_attributes(self: nnx.Module) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(self).items()
        if not k.startswith(("to_nnx__", "_pytree__")) and _is_state(v)
    }


def _merge(current: Any, new: Any) -> Any:
    """``new`` written into ``current``: existing variables of the same type are
    updated in place (references held elsewhere see it); the rest is added."""
    if (
        isinstance(current, nnx.Variable)
        and isinstance(new, nnx.Variable)
        and type(current) is type(new)
    ):
        current.set_value(new.get_value())
        return current
    if isinstance(current, Mapping) and isinstance(new, Mapping):
        out = dict(current)
        changed = False
        for key, value in new.items():
            merged = _merge(current.get(key), value)
            if merged is not current.get(key):
                out[key] = merged
                changed = True
        return out if changed else current
    return new


_MEMBERS: dict[type, frozenset[str]] = {}


def _members(cls: type) -> frozenset[str]:
    found = _MEMBERS.get(cls)
    if found is None:
        found = _MEMBERS[cls] = frozenset(dir(cls))
    return found


def store(self: nnx.Module, variables: Mapping[str, Any]) -> None:
    if not variables:
        return
    own = vars(self)
    members = _members(type(self))
    converted = _compat.linen_vars_to_nnx(variables)
    for name in converted:  # every name checked before anything is stored
        if (
            name in members
            or name.startswith(("to_nnx__", "_pytree__"))
            or (name in own and not _is_state(own[name]))
        ):
            raise NnxgenError(
                f"{type(self).__name__}: the Linen module has a variable or submodule "
                f"named {name!r}, which is also a member of the NNX wrapper; rename it "
                "in the Linen module"
            )
    for name, value in converted.items():
        current = own.get(name)
        merged = _merge(current, value)
        if merged is not current:
            setattr(
                self, name, nnx.data(merged) if isinstance(merged, Mapping) else merged
            )
