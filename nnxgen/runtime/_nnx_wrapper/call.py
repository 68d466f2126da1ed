"""NNX wrappers of Linen modules: every mirrored method runs the Linen module (:func:`linen_call`).

A generated class's ``__init__`` sets the wrapper up (:mod:`.init`); every
mirrored method forwards to :func:`linen_call`, which

* on the first call (or under ``nnx.bridge.lazy_init``) runs the Linen
  module's ``init_with_output`` with keys drawn from the wrapper's
  ``nnx.Rngs`` and stores the variables it made;
* afterwards runs ``apply`` on the stored variables (``intermediates`` and
  other sown collections start empty each call, as in a Linen ``apply`` that
  is not handed them back), every collection but ``params`` mutable, and writes what
  changed back in place (batch statistics in training, decode caches, sown
  values); under ``lazy_init`` ``params`` is mutable too, so a second method
  adds the variables it needs and keeps the trained ones.

Layout: exactly ``flax.nnx.bridge.ToNNX`` + ``lazy_init`` (the same
converters, :func:`_compat.linen_vars_to_nnx`): a Linen variable becomes an NNX
variable of the type flax's registry names for its collection (``params`` ->
``nnx.Param``, ``batch_stats`` -> ``nnx.BatchStat``, ...), stored under the
attribute named by its first path element (nested dicts below), collections
merged; sharding boxes (``nn.Partitioned``, ``nn.LogicallyPartitioned``)
become the variable's sharding metadata. The Linen module lives at
``to_nnx__module``, the (forked) ``nnx.Rngs`` at ``to_nnx__rngs``; keys are
drawn from every stream on every call, as ``ToNNX`` does, so the same seed
gives the same numbers as ``ToNNX``.

Mode: Linen mode arguments the caller leaves ``None`` follow the wrapper's
``.train()`` / ``.eval()`` / ``nnx.view`` mode (:mod:`.mode`). ``nnx.bridge.lazy_init``
needs no mode: with none set it runs the Linen method in eval mode
(``deterministic=True``, ``train=False``, ...), which makes the same variables.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import jax
from flax import errors as flax_errors
from flax import linen as nn
from flax import nnx
from flax.core.scope import DenyList

from nnxgen.runtime import _compat
from nnxgen.runtime._nnx_wrapper.init import MODULE, RNGS
from nnxgen.runtime._nnx_wrapper.mode import fill_modes, mode_error
from nnxgen.runtime._nnx_wrapper.stale import check_fresh
from nnxgen.runtime._nnx_wrapper.write_back import state_attributes, store
from nnxgen.runtime._streams import FallbackParamsStream, missing_stream_error

__all__ = ["linen_call"]

_R = TypeVar("_R")

_INTERMEDIATES = "intermediates"
#: Every collection but ``params`` may change during a call and is written back.
_APPLY_MUTABLE = DenyList(("params",))


def linen_call(
    self: nnx.Module,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    modes: tuple[str, ...] = (),
) -> _R:  # type: ignore[type-var]
    """Run ``method`` of the wrapped Linen module on the wrapper's variables.

    ``kwargs`` holds the arguments passed by keyword; the names in ``modes``
    (mode arguments, see the module docstring) are filled from the mode when
    ``None``; where neither the caller, a Linen field nor the mode sets one and the
    Linen default is ``None``, Linen decides (``dropout_rate=0`` attention needs
    no mode) and its "must be passed" error becomes a :class:`ModeError`. Typed
    ``-> _R`` like :func:`nnxgen.runtime.call`: a type checker
    takes the generated method's own return annotation.
    """
    module: nn.Module = getattr(self, MODULE)
    check_fresh(type(self), type(module))  # one dict lookup after the first call
    unset: tuple[str, ...] = ()
    if modes:
        kwargs, unset = fill_modes(self, module, method, kwargs, modes)
    try:
        result: _R = _run(self, module, method, args, kwargs)
    except ValueError as err:  # Linen's merge_param: 'Parameter "x" must be passed ...'
        arg = next((a for a in unset if f'"{a}" must be passed' in str(err)), None)
        if arg is None:
            raise
        raise mode_error(self, method, arg) from err
    return result


def _run(
    self: nnx.Module,
    module: nn.Module,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    linen_method: Any = None if method == "__call__" else method
    if method in vars(module):  # a field shadows the method: hand Linen the function
        linen_method = getattr(type(module), method)
    attrs = state_attributes(self)
    applying = bool(attrs) and not _compat.is_initializing(self)
    rngs, held_back = _draw(getattr(self, RNGS), hold_back=applying)
    if not attrs:
        out, variables = module.init_with_output(
            rngs, *args, method=linen_method, **kwargs
        )
        store(self, variables)
        return out
    try:
        return _apply(self, module, linen_method, args, kwargs, attrs, rngs)
    except flax_errors.InvalidRngError as err:
        found = re.search(r'needs PRNG for "([^"]+)"', str(err)) if held_back else None
        if found is None:  # not the held-back stream's doing: Linen's own error says it
            raise
        raise missing_stream_error(found[1]) from err


def _apply(
    self: nnx.Module,
    module: nn.Module,
    linen_method: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attrs: dict[str, Any],
    rngs: dict[str, jax.Array],
) -> Any:
    variables = _compat.nnx_to_linen_vars(attrs)
    for name in [k for k, v in variables.items() if k == _INTERMEDIATES or _sown(v)]:
        del variables[name]  # sown values start empty on every call, as in Linen
    mutable = True if _compat.is_initializing(self) else _APPLY_MUTABLE
    out, updates = module.apply(
        variables, *args, rngs=rngs, method=linen_method, mutable=mutable, **kwargs
    )
    store(self, _changed(variables, updates))
    return out


def _sown(tree: Any) -> bool:
    """A collection ``sow`` made: every variable holds a tuple (``sow``'s default
    reduction appends to one), e.g. ``self.sow("losses", "aux", x)``."""
    if isinstance(tree, tuple):
        return True
    return (
        isinstance(tree, Mapping)
        and bool(tree)
        and all(_sown(v) for v in tree.values())
    )


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The collections of ``after`` that the call changed: Linen hands the mutable
    collections it did not touch back as they came in (the same leaves), and
    converting and writing those back would be work for nothing (eval)."""
    out = {}
    for name, value in after.items():
        old = before.get(name)
        if old is not None:
            leaves, tree = jax.tree.flatten(value)
            old_leaves, old_tree = jax.tree.flatten(old)
            same = bool(operator.eq(tree, old_tree))
            if same and all(map(operator.is_, leaves, old_leaves)):
                continue
        out[name] = value
    return out


def _draw(rngs: nnx.Rngs, *, hold_back: bool) -> tuple[dict[str, jax.Array], bool]:
    """One key from every stream, ``default`` serving as ``params`` (as ToNNX),
    and whether a :class:`FallbackParamsStream` was held back (``hold_back``:
    the variables exist, nothing is initialised, so Linen needs no ``params``
    key but would serve a missing stream from it)."""
    items: Callable[[], Iterable[tuple[str, Any]]] = rngs.items
    names, streams = [], []
    held_back = False
    for name, stream in items():
        if hold_back and isinstance(stream, FallbackParamsStream):
            held_back = True
            continue
        names.append(name)
        streams.append(stream)
    keys = dict(zip(names, _compat.draw_streams(streams)))
    if "params" not in keys and "default" in keys:
        keys["params"] = keys.pop("default")
    return keys, held_back
