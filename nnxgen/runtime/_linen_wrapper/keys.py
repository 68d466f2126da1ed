"""Structural cache keys of constructor arguments (:func:`key_of`).

The layout cache (:mod:`.layout_cache`) and the init shortcut (:mod:`.init`) are keyed
per (wrapper class, constructor arguments). Real model code passes its
hyper-parameters as config objects that Python cannot hash -- a frozen dataclass
holding lists, a plain (non-frozen) dataclass, dicts, nested configs -- so the key
is built from the *contents* of an argument, recomputed on every call (a config
mutated between two calls gets a new key):

* ``int`` / ``str`` / ``None`` / ``bytes`` alone: the value itself; ``bool``,
  ``float``, ``complex``, numpy scalars, enums and any other hashable value:
  ``(type, value)`` (``1``, ``True``, ``1.0`` and ``np.float32(1)`` are equal in
  Python, not to a constructor: they never share an entry);
* lists, tuples (named tuples too), sets, mappings (in iteration order): their type,
  the types of their items, and the items (plain values) or their keys;
* dataclasses (frozen or not) and plain objects (hashed by identity or not at all,
  not callable, with a ``__dict__`` or ``__slots__``: a config class): their type, attribute
  names, and the keys of their attributes; ``functools.partial``: its function,
  arguments and keywords;
* functions, callables, classes, modules, Linen modules, NNX modules / variables /
  rngs: ``(type, value)``, by their own hash (identity for most), as before;
* generated wrappers: their class and the keys of their fields;
* concrete jax arrays: by identity (:class:`_ArrayIdentity`). A jax array never
  changes, so the same array object always builds the same module; the key holds
  only a weak reference (the cache keeps no array alive), and once the array is
  gone its key equals nothing (a new array may get its ``id``).

An argument nothing can key -- a numpy array (it can change in place), a tracer,
an unhashable object of another kind, a structure nested deeper than 48 levels
(or cyclic) -- raises :class:`Unkeyable`: the call then runs uncached, as it
always could.

Every key is a raw ``int`` / ``str`` / ``None`` / ``bytes`` or a tuple that starts
with a type (or a private tag) which says how the rest was made, so keys of
different kinds never compare equal. The kind of each type is found once
(:data:`_KINDS`); keying a config of tens of fields costs a few microseconds.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import weakref
from collections.abc import Callable, Hashable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from flax import nnx

from nnxgen.runtime._linen_wrapper.spec import WrapperSpec

__all__ = ["Unkeyable", "key_of"]


class Unkeyable(Exception):
    """An argument the layout cache cannot key (the call runs uncached)."""


#: Deeper than this (or a cycle) is not keyed.
_MAX_DEPTH = 48

# Tags of keys whose kind is not a type of its own.
_ATTRS = "nnxgen:attrs"  # an object's attributes
_ARRAY = "nnxgen:array"  # a jax array, by identity
_UNSET = object()  # a slot not set (keyed by identity)


def _raw(value: Any, depth: int) -> Hashable:
    return value  # type: ignore[no-any-return]


def _tagged(value: Any, depth: int) -> Hashable:
    return (type(value), value)


def _hashed(value: Any, depth: int) -> Hashable:
    try:
        hash(value)
    except TypeError:
        raise Unkeyable from None
    return (type(value), value)


def _unkeyable(value: Any, depth: int) -> Hashable:
    raise Unkeyable


class _ArrayIdentity:
    """A concrete jax array by identity, through a weak reference: equal only to
    the key of the same live array object."""

    __slots__ = ("_id", "_ref")

    def __init__(self, array: jax.Array) -> None:
        self._ref = weakref.ref(array)
        self._id = id(array)

    def __hash__(self) -> int:
        return self._id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _ArrayIdentity) or other._id != self._id:
            return False
        mine = self._ref()
        return mine is not None and mine is other._ref()


def _array(value: Any, depth: int) -> Hashable:
    try:
        return (_ARRAY, _ArrayIdentity(value))
    except TypeError:  # no weak reference to it: not keyed
        raise Unkeyable from None


def _items(values: tuple[Any, ...], depth: int) -> Hashable:
    """Key of the items of a container: their types, then the items themselves
    where they are atoms (exact within their type), else their keys."""
    types_ = tuple(map(type, values))
    if _ATOMS.issuperset(types_):
        return (types_, values)
    if depth > _MAX_DEPTH:
        raise Unkeyable
    depth += 1
    return (
        types_,
        tuple([v if t in _ATOMS else _key(v, depth) for v, t in zip(values, types_)]),
    )


def _sequence(value: Any, depth: int) -> Hashable:
    return (type(value), _items(tuple(value), depth))


def _mapping(value: Any, depth: int) -> Hashable:
    # iteration order kept: a constructor looping over a dict builds in that order
    return (
        type(value),
        _items(tuple(value), depth),
        _items(tuple(value.values()), depth),
    )


def _partial(value: Any, depth: int) -> Hashable:
    return (
        type(value),
        _items((value.func, value.args, value.keywords), depth),
        _attrs(value, depth) if vars(value) else None,
    )


def _wrapper(value: Any, depth: int) -> Hashable:
    spec: WrapperSpec = type(value).__nnxgen__
    return (
        type(value),
        _items(tuple([getattr(value, p.field) for p in spec.params]), depth),
    )


def _attrs(value: Any, depth: int) -> Hashable:
    """An object by its type and attributes: ``__dict__`` (every attribute a
    dataclass or plain object holds, in assignment order), then ``__slots__``."""
    d = getattr(value, "__dict__", None)
    slots = _slots_of(type(value))
    if not slots:
        if d is None:
            return (_ATTRS, type(value))
        return (_ATTRS, type(value), tuple(d), _items(tuple(d.values()), depth))
    names = (*(d or ()), *slots)
    values = [*(d.values() if d else ())]
    for name in slots:
        values.append(getattr(value, name, _UNSET))
    return (_ATTRS, type(value), names, _items(tuple(values), depth))


def _slots_of(cls: type) -> tuple[str, ...]:
    found = _SLOTS.get(cls)
    if found is None:
        found = _SLOTS[cls] = _find_slots(cls)
    return found


_SLOTS: dict[type, tuple[str, ...]] = {}


def _find_slots(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        names.extend(s for s in slots if s not in ("__dict__", "__weakref__"))
    return tuple(dict.fromkeys(names))


_Keyer = Callable[[Any, int], Hashable]

#: Immutable values whose ``==`` is exact within their type: inside a container
#: (whose key lists the types of its items) they are their own key.
_ATOMS = frozenset({int, float, bool, complex, str, bytes, type(None)})
#: Of those, alone: themselves (``1``, ``True``, ``1.0`` are equal in Python).
_RAW_TYPES = (int, str, type(None), bytes)
_TAGGED_TYPES = (bool, float, complex, range, slice, type(Ellipsis))

#: How each type is keyed, found on first sight (:func:`_kind_of`).
_KINDS: dict[type, _Keyer] = {
    **dict.fromkeys(_RAW_TYPES, _raw),
    **dict.fromkeys(_TAGGED_TYPES, _tagged),
    list: _sequence,
    tuple: _sequence,
    dict: _mapping,
}


def _kind_of(cls: type) -> _Keyer:
    if issubclass(cls, (np.ndarray, jax.core.Tracer)):
        return _unkeyable
    if issubclass(cls, jax.Array):
        return _array
    if isinstance(getattr(cls, "__nnxgen__", None), WrapperSpec) and issubclass(
        cls, nn.Module
    ):
        return _wrapper
    if issubclass(cls, (nn.Module, nnx.Pytree, nnx.Variable, nnx.Rngs)):
        # a Linen module keeps its own dataclass hash; NNX objects are keyed by
        # identity (their state is arrays), as before
        return _hashed
    if issubclass(cls, (np.generic, enum.Enum, type, np.dtype)):
        return _hashed
    if issubclass(cls, (list, tuple)):
        return _sequence
    if issubclass(cls, Mapping):
        return _mapping
    if issubclass(cls, AbstractSet):
        return _sequence  # in iteration order: equal sets may miss, never collide
    if issubclass(cls, functools.partial):
        return _partial
    if issubclass(
        cls,
        (
            types.FunctionType,
            types.BuiltinFunctionType,
            types.MethodType,
            types.ModuleType,
        ),
    ):
        return _hashed
    if dataclasses.is_dataclass(cls):
        return _attrs
    if (
        getattr(cls, "__hash__", None) in (object.__hash__, None)
        and not any("__call__" in vars(k) for k in cls.__mro__)
        and (cls.__dictoffset__ or _slots_of(cls))
    ):
        # a plain object, hashed by identity (or not hashable) but holding
        # attributes that may change (a config class, a pydantic model): by its
        # contents. Callables (activation or initializer objects, jitted
        # functions) stay keyed by identity.
        return _attrs
    return _hashed  # its own hash (or unhashable: Unkeyable)


def _key(value: Any, depth: int) -> Hashable:
    cls = type(value)
    keyer = _KINDS.get(cls)
    if keyer is None:
        keyer = _KINDS[cls] = _kind_of(cls)
    return keyer(value, depth)


def key_of(value: Any) -> Hashable:
    """A hashable key equal for arguments that build the same module (see the
    module docstring); raises :class:`Unkeyable` where there is none."""
    try:
        return _key(value, 0)
    except RecursionError:
        raise Unkeyable from None
