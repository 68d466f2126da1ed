"""The entry point of generated methods: the whole init / apply story of a wrapper.

``call(wrapper, method, args, kwargs, train)``:

* **init** (``_initialize``): build the NNX module with rngs fed from Linen
  (:mod:`._build`, :mod:`._rngs`), store its state in Linen collections
  (:mod:`._state`), then run the method and store what it added -- unless this
  is a top-level ``Module.init`` that is known not to need it (:mod:`._init`).
* **apply** (``_merged``): merge the Linen variables into the cached graph
  definition (:mod:`._graph`: no constructor runs), seed the rng streams from
  Linen (:mod:`._rngs`), set the mode (:mod:`._mode`), run the method and write
  back every collection the caller made mutable (:mod:`._state`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._build import _build_nnx, _init_base
from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._graph import _Entry, _entry_for, _extended_entry
from nnxgen.runtime._immutable import read_only_merge, writing
from nnxgen.runtime._init import (
    _forward_key,
    _layout_key,
    _module_facts,
    _remember_pure_forward,
    _skippable_forward,
)
from nnxgen.runtime._mode import (
    _is_missing_mode,
    _mode_error,
    _resolve_mode,
    _set_mode,
)
from nnxgen.runtime._rngs import (
    FallbackParamsStream,
    _linen_rngs,
    _method_rngs,
    _missing_streams,
    _MissingRngStream,
    _put_rng_state,
    _Rngs,
    _serve_streams,
)
from nnxgen.runtime._sow import capturing, sow_types
from nnxgen.runtime._spec import WrapperSpec
from nnxgen.runtime._stale import check_fresh
from nnxgen.runtime._state import (
    _flat_state,
    _gather_state,
    _node_at,
    _put,
    _unexpected,
    _write_back,
)

__all__ = ["call", "to_nnx"]

_R = TypeVar("_R")


def call(
    linen: nn.Module,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    train: bool | None = None,
) -> _R:  # type: ignore[type-var]
    """Run ``method`` of the NNX module that ``linen`` (a generated wrapper) stands for.

    Typed ``-> _R``, a type variable bound by the caller's context: in a
    generated ``def __call__(...) -> jax.Array: return _rt.call(...)`` a type
    checker takes the NNX method's own return annotation, so ``mypy --strict``
    has nothing to add (no ``Any`` returned).
    """
    cls_name = type(linen).__name__
    if linen.scope is None:
        raise NnxgenError(
            f"{cls_name}.{method} was called on an unbound module: use "
            f"{cls_name}(...).init(key, ...) / .apply(variables, ...), or call it "
            f"from inside another Linen module."
        )
    check_fresh(type(linen))  # a stale generated file: say so, once per class
    mode = _resolve_mode(train)
    spec: WrapperSpec = getattr(type(linen), "__nnxgen__")  # noqa: B009
    wants_rngs = method in spec.rngs_methods and "rngs" not in kwargs
    if linen.is_initializing() or (
        not linen.variables and linen.is_mutable_collection("params")
    ):
        out: _R = _initialize(linen, method, args, kwargs, mode, wants_rngs)
        return out

    # cached graph + variables + Linen rngs; variables of collections the caller
    # did not make mutable are read-only, as in Linen (see _immutable)
    entry, module = _merged(linen, mode, read_only=True)
    with _missing_streams(None, strict=mode is True, cls_name=cls_name):
        if wants_rngs and (r := _method_rngs(linen, module, method)) is not None:
            kwargs = {**kwargs, "rngs": r}
        sown: list[Any] = []
        capture = sow_types(linen, entry.collections) if entry.sows else None
        with writing(cls_name, method, module):
            result: _R = _run(
                module, method, args, kwargs, cls_name, mode, capture, sown
            )
    _store_mutable(linen, entry, module)
    _put(linen, sown)
    return result


def _initialize(
    linen: nn.Module,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    mode: bool | None,
    wants_rngs: bool,
) -> Any:
    """init: build the NNX module, store its state, run the method, store what it added."""
    cls_name = type(linen).__name__
    keys = _linen_rngs(linen)
    layout = _layout_key(linen)
    fwd_key = _forward_key(linen, method, mode, args, kwargs, layout)
    with (
        _missing_streams(_init_base(keys), strict=False, cls_name=cls_name),
        _compat.outside_linen(),
    ):
        module = _build_nnx(linen, _Rngs(**keys))
        flat = _flat_state(module)
        _put(linen, flat)
        if _skippable_forward(linen, method, fwd_key):
            return None  # discarded by Module.init
        before = {(col, path) for col, path, _ in flat}
        if mode is None:
            # Linen's init never updates batch statistics and its discarded
            # forward needs no dropout key: with no mode given, init runs the
            # method as after .eval() (apply still raises ModeError).
            mode = False
        # graph walks, once per layout: mode attributes (set unless they all hold
        # this mode's value already, as constructed), sow
        has_mode, preset, sows = _module_facts(layout, module)
        if has_mode and preset is not (not mode):
            _set_mode(module, mode)
        if wants_rngs and (r := _method_rngs(linen, module, method)) is not None:
            kwargs = {**kwargs, "rngs": r}
        sown: list[Any] = []
        capture = None
        if sows:
            capture = sow_types(linen, {col for col, _, _ in flat})
        out = _run(module, method, args, kwargs, cls_name, mode, capture, sown)
    added = [e for e in _flat_state(module) if e[:2] not in before] + sown
    _put(linen, added)
    if not added and fwd_key is not None:
        _remember_pure_forward(fwd_key)
    return out


def _store_mutable(linen: nn.Module, entry: _Entry, module: Any) -> None:
    """apply: write every collection the caller made mutable back to Linen."""
    mutable = linen.scope.mutable  # type: ignore[union-attr]
    if isinstance(mutable, (str, list, tuple)):
        # Named collections, all known to hold this module's state (the usual
        # mutable=['batch_stats']): write their variables, found by their cached
        # paths, without flattening the whole module.
        named = {mutable} if isinstance(mutable, str) else set(mutable)
        if named <= set(entry.collections):
            _put(
                linen,
                [
                    (leaf.collection, leaf.path, _node_at(module, leaf.path))
                    for leaf in entry.leaves
                    if leaf.collection in named
                ],
            )
            return
    if any(
        linen.is_mutable_collection(c) for c in entry.collections
    ) or linen.is_mutable_collection("intermediates"):
        _write_back(linen, module)


def _merged(
    linen: nn.Module, mode: bool | None, *, read_only: bool = False
) -> tuple[_Entry, Any]:
    """The NNX module for ``linen``'s variables: cached graph + state + Linen rngs.

    ``read_only``: the variables of every collection the caller did not make
    mutable raise on a write (:mod:`._immutable`), as Linen's do.
    """
    cls_name = type(linen).__name__
    entry = _entry_for(linen)
    variables = linen.variables
    extras = _unexpected(cls_name, entry, variables)
    if extras:  # state that a method created after construction (a cache)
        entry = _extended_entry(linen, entry, extras)
    state = _gather_state(cls_name, entry, variables)
    missing, fallback = (
        _put_rng_state(state, entry, linen, mode is True)
        if entry.rng_leaves
        else ([], [])
    )
    graph_key = mode if entry.has_mode else True
    module = (
        read_only_merge(linen, entry, graph_key, state)
        if read_only
        else nnx.merge(entry.graphdefs[graph_key], state)
    )
    for rng in missing:
        _node_at(module, rng.path).__class__ = _MissingRngStream
    for rng in fallback:
        _node_at(module, rng.path).__class__ = FallbackParamsStream
    if entry.rngs_nodes:
        _serve_streams(linen, entry, module, strict=mode is True)
    return entry, module


def _run(
    module: Any,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    cls_name: str,
    mode: bool | None,
    capture: tuple[type, ...] | None = None,
    sown: list[Any] | None = None,
) -> Any:
    fn: Callable[..., Any] = (  # the class's method, also where an attribute shadows it
        getattr(type(module), method).__get__(module)
        if method in getattr(module, "__dict__", ())
        else getattr(module, method)
    )
    if capture is not None and sown is not None:
        fn = capturing(fn, capture, sown)
    if mode is not None:
        return fn(*args, **kwargs)
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        if _is_missing_mode(err):
            raise _mode_error(cls_name, method, err) from err
        raise


def to_nnx(
    wrapper: nn.Module,
    variables: Mapping[str, Any],
    *,
    train: bool | None = None,
    rngs: Any = None,
) -> Any:
    """The live NNX module that ``wrapper.apply(variables, ..., rngs=rngs)`` would run.

    Its state holds ``variables``; its rng streams are seeded from ``rngs``
    exactly as in ``apply`` (the first draw of stream ``t`` is ``make_rng(t)``);
    ``train`` sets ``.train()`` / ``.eval()``. Useful for debugging, for
    exporting to pure NNX, and for checking the wrapper against NNX.
    """
    mode = _resolve_mode(train)

    def capture(linen: nn.Module) -> Any:
        return _merged(linen, mode)[1]

    return wrapper.apply(variables, method=capture, rngs=rngs)
