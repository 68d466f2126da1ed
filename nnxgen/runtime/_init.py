"""Top-level ``init`` without a redundant forward pass.

Linen's ``Module.init`` runs the method and throws its output away; the only
thing the forward pass can contribute to the variables is state the method
*adds* (sown intermediates, lazily created parameters, caches). So the runtime
remembers, per (wrapper configuration, method, mode, argument shapes/dtypes,
rng streams), whether an ``init`` saw the method add any variable; a later
top-level ``init`` of the same key returns the constructor's state without
running it.

How the runtime knows the output is discarded, with nothing but documented
behaviour: every generated class gets an ``init`` (installed by
``WrapperSpec.__set_name__`` when the class body runs, marked ``nn.nowrap``)
that calls ``Module.init`` inside a context naming the class and the method it
runs. :func:`_skippable_forward` skips only when that context names this
wrapper's own generated method (a subclass or a Linen transform that redefines
it does not match), the wrapper is top-level, intermediates are not mutable
and no ``nn.intercept_methods`` interceptor is active. ``init_with_output``,
parents and anything else that sees the output always run the method.
Set ``nnxgen.runtime.INIT_SKIPS_KNOWN_FORWARD = False`` to always run it.
"""

from __future__ import annotations

import collections
import contextvars
import enum
import sys
from collections.abc import Hashable
from typing import Any, cast

import jax
import numpy as np
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._graph import (
    _CACHE_SIZE,
    _cache_lock,
    _key_of,
    _Unhashable,
)
from nnxgen.runtime._mode import _MODE_ATTRIBUTES
from nnxgen.runtime._sow import _class_sows

#: Keys of (wrapper, method, mode, argument types, streams) whose forward pass
#: was seen, during an ``init``, to add no variable to the NNX module; and, under
#: ``(_FACTS, layout key)``, the :func:`_module_facts` of a layout (cleared with
#: them by ``clear_cache``).
_PURE_FORWARDS: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

_FACTS = "nnxgen:module facts"
_UNSET: Any = object()

#: (generated class, method name) of the ``init`` running now, if any.
_DISCARDING: contextvars.ContextVar[tuple[type, str] | None] = contextvars.ContextVar(
    "nnxgen_init_discards", default=None
)


def install_init(owner: type) -> None:
    """Give the generated class ``owner`` an ``init`` that marks its output discarded."""
    if "init" in vars(owner):
        return

    @nn.nowrap
    def init(
        self: nn.Module, rngs: Any, *args: Any, method: Any = None, **kwargs: Any
    ) -> Any:
        name = _own_method(owner, type(self), method)
        token = _DISCARDING.set((type(self), name) if name else None)
        try:  # looked up per call: Kauldron patches Module.init when imported
            return super(cast(Any, owner), self).init(
                rngs, *args, method=method, **kwargs
            )
        finally:
            _DISCARDING.reset(token)

    init.__doc__ = nn.Module.init.__doc__
    init.__nnxgen_init__ = True  # type: ignore[attr-defined]
    init.__qualname__ = f"{owner.__qualname__}.init"
    owner.init = init  # type: ignore[attr-defined]


def _own_method(owner: type, cls: type, method: Any) -> str | None:
    """The name of the generated method ``init`` will run, or None for anything else."""
    if method is None:
        name = "__call__"
    elif isinstance(method, str):
        name = method
    else:
        name = getattr(method, "__name__", "")
        if getattr(cls, name, None) is not method:
            return None
    fn = vars(owner).get(name)
    if fn is None or getattr(cls, name, None) is not fn:
        return None  # not generated, or redefined by a subclass / transform
    return name


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


def _arg_key(value: Any) -> Hashable:
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


def _layout_key(linen: nn.Module) -> Hashable | None:
    """The layout cache's key of ``linen`` (:func:`._graph._key_of`), or None."""
    try:
        return _key_of(linen)
    except _Unhashable:
        return None


def _forward_key(
    linen: nn.Module,
    method: str,
    mode: bool | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    layout: Hashable | None = _UNSET,
) -> Hashable | None:
    if layout is _UNSET:
        layout = _layout_key(linen)
    if layout is None:
        return None
    try:
        return (
            layout,
            method,
            mode,
            _arg_key((args, tuple(sorted(kwargs.items())))),
            tuple(sorted(linen.scope.rngs)),  # type: ignore[union-attr]
        )
    except (_Unhashable, TypeError):
        return None


def _module_facts(layout: Hashable | None, module: Any) -> tuple[bool, Any, bool]:
    """What ``init`` needs to know about ``module`` as just constructed -- whether
    it has mode attributes, the one value they all hold (``_MIXED`` if not one),
    and whether some module in it sows -- found by walking its graph once per
    layout (the constructor of one layout key builds the same graph with the same
    attributes); every time for a layout that has no key."""
    if layout is None:
        return _walk_facts(module)
    key = (_FACTS, layout)
    facts = _PURE_FORWARDS.get(key)
    if facts is None:
        facts = _walk_facts(module)
        _remember(key, facts)
    return cast(tuple[bool, Any, bool], facts)


_MIXED: Any = object()


def _walk_facts(module: Any) -> tuple[bool, Any, bool]:
    """:func:`_module_facts` by one walk of the graph."""
    values: dict[int, Any] = {}
    sows = False
    for _, m in nnx.iter_modules(module):
        sows = sows or _class_sows(type(m))
        for a in _MODE_ATTRIBUTES:
            if (v := getattr(m, a, _MIXED)) is not _MIXED:
                values[id(v)] = v
    if not values:
        preset = _MIXED
    else:
        first = next(iter(values.values()))
        one = len(values) == 1 and (first is None or isinstance(first, bool))
        preset = first if one else _MIXED
    return bool(values), preset, sows


def _skippable_forward(linen: nn.Module, method: str, key: Hashable | None) -> bool:
    """Whether this ``init`` may skip running the method (see the module docstring)."""
    return (
        key is not None
        and key in _PURE_FORWARDS
        and _DISCARDING.get() == (type(linen), method)
        and not isinstance(linen.parent, nn.Module)
        and not linen.is_mutable_collection("intermediates")
        and not _compat.interceptors_active()
        and getattr(sys.modules[__package__], "INIT_SKIPS_KNOWN_FORWARD", True)
    )


def _remember_pure_forward(key: Hashable) -> None:
    _remember(key, None)


def _remember(key: Hashable, value: Any) -> None:
    with _cache_lock:
        _PURE_FORWARDS[key] = value
        _PURE_FORWARDS.move_to_end(key)
        if len(_PURE_FORWARDS) > _CACHE_SIZE:
            _PURE_FORWARDS.popitem(last=False)
