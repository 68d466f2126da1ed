"""Linen's immutable collections inside the NNX module an ``apply`` runs.

In Linen, writing a variable of a collection the caller did not make mutable
(``apply(v, x, train=True)`` without ``mutable=['batch_stats']``, a decode step
without ``mutable=['cache']``) raises ``ModifyScopeVariableError``. NNX has no
such notion, so ``apply`` gives each variable of those collections a read-only
stand-in type: a subclass of its own type (``isinstance`` checks, filters and
the collection name are unchanged) whose ``set_value`` -- the path of every NNX
write: ``v[...] = x``, ``v.value = x``, ``v.set_value(x)`` -- raises
:class:`ImmutableCollectionError` at the write, eager or traced, inside NNX
transforms too (their inner copies keep the type; their write-back of
unchanged state, ``update_from_state``, is not a write).

Cost: none per call beyond one ``is_mutable_collection`` per collection. The
read-only graph definition is made once per (layout, mode, immutable
collections) and cached on the layout entry; ``nnx.merge`` then builds the
read-only variables directly. Sown values are not variables of the layout and
keep Linen's rule (dropped when immutable, no error).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Hashable, Iterator
from typing import Any

from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import ImmutableCollectionError
from nnxgen.runtime._linen_wrapper.layout import Entry
from nnxgen.runtime._linen_wrapper.state import collection_of

__all__ = ["read_only_merge", "writing"]

#: (wrapper class name, method, module) of the apply running now, for messages.
_RUNNING: contextvars.ContextVar[tuple[str, str, Any] | None] = contextvars.ContextVar(
    "nnxgen_running", default=None
)


@contextlib.contextmanager
def writing(cls_name: str, method: str, module: Any) -> Iterator[None]:
    """Name the wrapper and method in the error of a write to a read-only variable."""
    token = _RUNNING.set((cls_name, method, module))
    try:
        yield
    finally:
        _RUNNING.reset(token)


def _path_of(module: Any, var: Any) -> tuple[Any, ...] | None:
    for path, node in nnx.iter_graph(module):
        if node is var:
            return tuple(path)
    return None  # an inner copy made by an NNX transform


def _raise_on_write(self: nnx.Variable[Any], *args: Any, **kwargs: Any) -> None:
    col = collection_of(type(self))
    running = _RUNNING.get()
    cls_name, method, module = running or ("the wrapper", "a method", None)
    path = _path_of(module, self) if module is not None else None
    # an inner copy made by an NNX transform has no path here: name its (base) type
    where = "/".join(map(str, path)) if path else type(self).__mro__[1].__name__
    raise ImmutableCollectionError(cls_name, method, col, where)


@functools.cache
def read_only_type(var_type: type) -> type:
    """The read-only stand-in for ``var_type`` (made once per type)."""
    return type(
        var_type.__name__,
        (var_type,),
        {
            "__slots__": (),
            "__module__": var_type.__module__,
            "__qualname__": var_type.__qualname__,
            "_nnxgen_base": var_type,
            "set_value": _raise_on_write,
        },
    )


def read_only_merge(
    linen: nn.Module, entry: Entry, graph_key: Any, state: dict[Any, Any]
) -> Any:
    """``nnx.merge`` of ``state`` whose immutable collections' variables are read-only."""
    immutable = frozenset(
        c for c in entry.collections if not linen.is_mutable_collection(c)
    )
    if not immutable:
        return nnx.merge(entry.graphdefs[graph_key], state)
    key: Hashable = (graph_key, immutable)
    graphdef = entry.read_only.get(key)
    if graphdef is not None:
        return nnx.merge(graphdef, state)
    module = nnx.merge(entry.graphdefs[graph_key], state)
    nodes = list(nnx.iter_graph(module))
    # A Linen part (ToNNX, an NNX wrapper of Linen) converts its variables to
    # Linen and back by their registered types on every call: left as they are.
    bridges = [tuple(p) for p, n in nodes if _compat.is_linen_bridge(n)]
    for path, node in nodes:
        if (
            isinstance(node, nnx.Variable)
            and not isinstance(node, nnx.RngState)
            and collection_of(type(node)) in immutable
            and not any(tuple(path[: len(b)]) == b for b in bridges)
        ):
            node.__class__ = read_only_type(type(node))
    entry.read_only[key] = nnx.graphdef(module)
    return module
