"""Top-level ``init`` without a redundant forward pass.

Linen's ``Module.init`` runs the method and throws its output away; the only
thing the forward pass can contribute to the variables is state the method
*adds* (sown intermediates, lazily created parameters, caches). So the runtime
remembers, per (wrapper configuration, method, mode, argument shapes/dtypes,
rng streams), whether an ``init`` saw the method add any variable; a later
top-level ``init`` of the same key returns the constructor's state without
running it.

How the runtime knows the output is discarded: every generated class gets an
``init`` that calls ``Module.init`` inside a context naming the class and the
method it runs (:mod:`.init_method`). :func:`skippable_forward` skips only when
that context names this wrapper's own generated method (a subclass or a Linen transform that redefines
it does not match), the wrapper is top-level, intermediates are not mutable
and no ``nn.intercept_methods`` interceptor is active. ``init_with_output``,
parents and anything else that sees the output always run the method.
Set ``nnxgen.runtime.INIT_SKIPS_KNOWN_FORWARD = False`` to always run it.
"""

from __future__ import annotations

import collections
import enum
import sys
from collections.abc import Hashable
from typing import Any, cast

import jax
import numpy as np
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._linen_wrapper.init_method import discarding
from nnxgen.runtime._linen_wrapper.keys import Unkeyable, key_of
from nnxgen.runtime._linen_wrapper.layout import CACHE_SIZE, cache_lock
from nnxgen.runtime._linen_wrapper.mode import MODE_ATTRIBUTES
from nnxgen.runtime._linen_wrapper.sow import class_sows

#: Keys of (wrapper, method, mode, argument types, streams) whose forward pass
#: was seen, during an ``init``, to add no variable to the NNX module.
PURE_FORWARDS: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

#: Layout key -> :func:`module_facts` of the module that layout constructs.
MODULE_FACTS: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

_UNSET: Any = object()

#: Argument leaves that a forward pass cannot change in place: only these (and
#: arrays, by shape and dtype) let an ``init`` be skipped. Anything else -- an
#: ``nnx.Module`` or ``nnx.Variable`` (a KV cache passed as ``cache=c``), a
#: list, an arbitrary object -- may be mutated by the forward, which a skipped
#: ``init`` would silently not do.
_VALUE_TYPES = (type(None), bool, int, float, complex, str, bytes, enum.Enum, type)


def _is_node(x: Any) -> bool:
    # kept whole, so that they make the key fail: NNX nodes (a Module may be a
    # pytree of arrays) and mutable containers (a forward may append to a list)
    return isinstance(x, (nnx.Variable, nnx.Module, list, dict))


def arg_key(value: Any) -> Hashable:
    leaves, treedef = jax.tree_util.tree_flatten(value, is_leaf=_is_node)
    out: list[Hashable] = [treedef]
    for leaf in leaves:
        if isinstance(leaf, (jax.Array, np.ndarray, jax.core.Tracer)):
            aval = jax.typeof(leaf) if not isinstance(leaf, np.ndarray) else leaf
            out.append(
                (
                    tuple(aval.shape),
                    str(aval.dtype),
                    bool(getattr(aval, "weak_type", False)),
                )
            )
        elif isinstance(leaf, (*_VALUE_TYPES, np.generic, np.dtype)):
            out.append((type(leaf), leaf))
        else:
            raise TypeError("not cacheable: the forward could mutate it")
    return tuple(out)


def layout_key(linen: nn.Module) -> Hashable | None:
    """The layout cache's key of ``linen`` (:func:`.keys.key_of`), or None."""
    try:
        return key_of(linen)
    except Unkeyable:
        return None


def forward_key(
    linen: nn.Module,
    method: str,
    mode: bool | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    layout: Hashable | None = _UNSET,
) -> Hashable | None:
    if layout is _UNSET:
        layout = layout_key(linen)
    if layout is None:
        return None
    try:
        return (
            layout,
            method,
            mode,
            arg_key((args, tuple(sorted(kwargs.items())))),
            tuple(sorted(linen.scope.rngs)),  # type: ignore[union-attr]
        )
    except (Unkeyable, TypeError):
        return None


def module_facts(
    layout: Hashable | None, module: Any
) -> tuple[tuple[bool, Any, bool], list[nnx.Module] | None]:
    """What ``init`` needs to know about ``module`` as just constructed -- whether
    it has mode attributes, the one value they all hold (``_MIXED`` if not one),
    and whether some module in it sows -- found by walking its graph once per
    layout (the constructor of one layout key builds the same graph with the same
    attributes); every time for a layout that has no key. Second: the modules
    the walk listed (``nnx.iter_modules``), for :func:`.mode.set_mode`; None
    when the facts came from the cache (no walk)."""
    if layout is not None and (facts := MODULE_FACTS.get(layout)) is not None:
        return cast(tuple[bool, Any, bool], facts), None
    modules = [m for _, m in nnx.iter_modules(module)]
    facts = _facts(modules)
    if layout is not None:
        _remember(MODULE_FACTS, layout, facts)
    return facts, modules


_MIXED: Any = object()


def _facts(modules: list[nnx.Module]) -> tuple[bool, Any, bool]:
    """:func:`module_facts` of the modules of one graph."""
    values: dict[int, Any] = {}
    sows = False
    for m in modules:
        sows = sows or class_sows(type(m))
        for a in MODE_ATTRIBUTES:
            if (v := getattr(m, a, _MIXED)) is not _MIXED:
                values[id(v)] = v
    if not values:
        preset = _MIXED
    else:
        first = next(iter(values.values()))
        one = len(values) == 1 and (first is None or isinstance(first, bool))
        preset = first if one else _MIXED
    return bool(values), preset, sows


def skippable_forward(linen: nn.Module, method: str, key: Hashable | None) -> bool:
    """Whether this ``init`` may skip running the method (see the module docstring)."""
    return (
        key is not None
        and key in PURE_FORWARDS
        and discarding() == (type(linen), method)
        and not isinstance(linen.parent, nn.Module)
        and not linen.is_mutable_collection("intermediates")
        and not _compat.interceptors_active()
        and getattr(sys.modules["nnxgen.runtime"], "INIT_SKIPS_KNOWN_FORWARD", True)
    )


def remember_pure_forward(key: Hashable) -> None:
    _remember(PURE_FORWARDS, key, None)


def _remember(
    cache: collections.OrderedDict[Hashable, Any], key: Hashable, value: Any
) -> None:
    with cache_lock:
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
