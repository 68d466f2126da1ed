"""Values sown by the NNX module (``Module.sow``), under ``nnx.capture``.

Outside ``nnx.capture`` flax (0.12.8 and 0.12.12) deprecates ``sow``. So a
method of a module that sows runs inside ``nnx.capture(fn, *types)`` with the
variable types of the Linen collections the caller made mutable (other than
the module's own state): what it sows there is returned and stored in Linen
(``intermediates`` appended to, as Linen's ``sow`` does); what it sows into an
immutable collection is dropped, as Linen drops it.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterable
from typing import Any

from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._linen_wrapper.state import collection_of

_SOW_NAMES = frozenset({"sow", "perturb"})


def module_sows(module: Any) -> bool:
    """Whether any module in ``module``'s graph has code that calls ``sow``."""
    return any(class_sows(type(m)) for _, m in nnx.iter_modules(module))


@functools.cache
def class_sows(cls: type) -> bool:
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] == "flax" or klass is object:
            continue
        for value in vars(klass).values():
            fn = getattr(value, "__func__", value)
            if callable(fn):
                fn = inspect.unwrap(fn)
            code = getattr(fn, "__code__", None)
            if isinstance(code, types.CodeType) and _names(code) & _SOW_NAMES:
                return True
    return False


def _names(code: types.CodeType) -> set[str]:
    out = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out |= _names(const)
    return out


def sow_types(linen: nn.Module, own: Iterable[str]) -> tuple[type, ...]:
    """Variable types of the mutable Linen collections a method may sow into."""
    skip = {*own, "params"}
    return tuple(
        _compat.variable_type(name)
        for name in _compat.registered_collections()
        if name not in skip and linen.is_mutable_collection(name)
    )


def capturing(
    fn: Callable[..., Any], var_types: tuple[type, ...], into: list[Any]
) -> Callable[..., Any]:
    """``fn`` under ``nnx.capture``; ``(collection, path, variable)`` of what it
    sowed of ``var_types`` are appended to ``into``."""
    captured = nnx.capture(fn, *var_types)

    def run(*args: Any, **kwargs: Any) -> Any:
        res = captured(*args, **kwargs)
        if not var_types:
            return res
        out, *states = res
        for state in states:
            for path, var in nnx.to_flat_state(state):
                into.append((collection_of(var.__class__), tuple(path), var))
        return out

    return run
