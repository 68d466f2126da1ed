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
from nnxgen.runtime._graph import _CACHE_SIZE, _cache_lock, _key_of, _Unhashable

#: Keys of (wrapper, method, mode, argument types, streams) whose forward pass
#: was seen, during an ``init``, to add no variable to the NNX module.
_PURE_FORWARDS: collections.OrderedDict[Hashable, None] = collections.OrderedDict()

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


def _forward_key(
    linen: nn.Module,
    method: str,
    mode: bool | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Hashable | None:
    try:
        return (
            _key_of(linen),
            method,
            mode,
            _arg_key((args, tuple(sorted(kwargs.items())))),
            tuple(sorted(linen.scope.rngs)),  # type: ignore[union-attr]
        )
    except (_Unhashable, TypeError):
        return None


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
    with _cache_lock:
        _PURE_FORWARDS[key] = None
        _PURE_FORWARDS.move_to_end(key)
        if len(_PURE_FORWARDS) > _CACHE_SIZE:
            _PURE_FORWARDS.popitem(last=False)
