"""The entry point of generated methods: the whole init / apply story of a wrapper.

``call(wrapper, method, args, kwargs, train)``:

* **init** (``_initialize``): build the NNX module with rngs fed from Linen
  (:mod:`.build`, :mod:`.rngs`), store its state in Linen collections
  (:mod:`.state`), then run the method and store what it added -- unless this
  is a top-level ``Module.init`` that is known not to need it (:mod:`.init`).
* **apply** (``_merged``): merge the Linen variables into the cached graph
  definition (:mod:`.layout_cache`: no constructor runs), seed the rng streams
  from Linen (:mod:`.rng_state`), set the mode (:mod:`.mode`), run the method
  and write back every collection the caller made mutable (:mod:`.state`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._linen_wrapper.build import build_nnx, init_base
from nnxgen.runtime._linen_wrapper.immutable import read_only_merge, writing
from nnxgen.runtime._linen_wrapper.init import (
    forward_key,
    layout_key,
    module_facts,
    remember_pure_forward,
    skippable_forward,
)
from nnxgen.runtime._linen_wrapper.layout import Entry
from nnxgen.runtime._linen_wrapper.layout_cache import entry_for, extended_entry
from nnxgen.runtime._linen_wrapper.mode import (
    is_missing_mode,
    mode_error,
    resolve_mode,
    set_mode,
)
from nnxgen.runtime._linen_wrapper.rng_state import put_rng_state, serve_streams
from nnxgen.runtime._linen_wrapper.rngs import Rngs, linen_rngs, method_rngs
from nnxgen.runtime._linen_wrapper.sow import capturing, sow_types
from nnxgen.runtime._linen_wrapper.spec import WrapperSpec
from nnxgen.runtime._linen_wrapper.stale import check_fresh
from nnxgen.runtime._linen_wrapper.state import (
    flat_state,
    gather_state,
    node_at,
    put,
    unexpected,
    write_back,
)
from nnxgen.runtime._streams import (
    FallbackParamsStream,
    MissingRngStream,
    missing_streams,
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
    mode = resolve_mode(train)
    spec: WrapperSpec = getattr(type(linen), "__nnxgen__")  # noqa: B009
    wants_rngs = method in spec.rngs_methods and "rngs" not in kwargs
    if linen.is_initializing() or (
        not linen.variables and linen.is_mutable_collection("params")
    ):
        out: _R = _initialize(linen, method, args, kwargs, mode, wants_rngs)
        return out

    # cached graph + variables + Linen rngs; variables of collections the caller
    # did not make mutable are read-only, as in Linen (see .immutable)
    entry, module = _merged(linen, mode, read_only=True)
    with missing_streams(None, strict=mode is True, cls_name=cls_name):
        if wants_rngs and (r := method_rngs(linen, module, method)) is not None:
            kwargs = {**kwargs, "rngs": r}
        sown: list[Any] = []
        capture = sow_types(linen, entry.collections) if entry.sows else None
        with writing(cls_name, method, module):
            result: _R = _run(
                module, method, args, kwargs, cls_name, mode, capture, sown
            )
    _store_mutable(linen, entry, module)
    put(linen, sown)
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
    keys = linen_rngs(linen)
    layout = layout_key(linen)
    fwd_key = forward_key(linen, method, mode, args, kwargs, layout)
    with (
        missing_streams(init_base(keys), strict=False, cls_name=cls_name),
        _compat.outside_linen(),
    ):
        module = build_nnx(linen, Rngs(**keys))
        flat = flat_state(module)
        put(linen, flat)
        if skippable_forward(linen, method, fwd_key):
            return None  # discarded by Module.init
        before = {(col, path) for col, path, _ in flat}
        if mode is None:
            # Linen's init never updates batch statistics and its discarded
            # forward needs no dropout key: with no mode given, init runs the
            # method as after .eval() (apply still raises ModeError).
            mode = False
        # graph walks, once per layout: mode attributes (set unless they all hold
        # this mode's value already, as constructed), sow
        (has_mode, preset, sows), modules = module_facts(layout, module)
        if has_mode and preset is not (not mode):
            set_mode(module, mode, modules)
        if wants_rngs and (r := method_rngs(linen, module, method)) is not None:
            kwargs = {**kwargs, "rngs": r}
        sown: list[Any] = []
        capture = None
        if sows:
            capture = sow_types(linen, {col for col, _, _ in flat})
        out = _run(module, method, args, kwargs, cls_name, mode, capture, sown)
    added = [e for e in flat_state(module) if e[:2] not in before] + sown
    put(linen, added)
    if not added and fwd_key is not None:
        remember_pure_forward(fwd_key)
    return out


def _store_mutable(linen: nn.Module, entry: Entry, module: Any) -> None:
    """apply: write every collection the caller made mutable back to Linen."""
    mutable = linen.scope.mutable  # type: ignore[union-attr]
    if isinstance(mutable, (str, list, tuple)):
        # Named collections, all known to hold this module's state (the usual
        # mutable=['batch_stats']): write their variables, found by their cached
        # paths, without flattening the whole module.
        named = {mutable} if isinstance(mutable, str) else set(mutable)
        if named <= set(entry.collections):
            put(
                linen,
                [
                    (leaf.collection, leaf.path, node_at(module, leaf.path))
                    for leaf in entry.leaves
                    if leaf.collection in named
                ],
            )
            return
    if any(
        linen.is_mutable_collection(c) for c in entry.collections
    ) or linen.is_mutable_collection("intermediates"):
        write_back(linen, module)


def _merged(
    linen: nn.Module, mode: bool | None, *, read_only: bool = False
) -> tuple[Entry, Any]:
    """The NNX module for ``linen``'s variables: cached graph + state + Linen rngs.

    ``read_only``: the variables of every collection the caller did not make
    mutable raise on a write (:mod:`.immutable`), as Linen's do.
    """
    cls_name = type(linen).__name__
    entry = entry_for(linen)
    variables = linen.variables
    extras = unexpected(cls_name, entry, variables)
    if extras:  # state that a method created after construction (a cache)
        entry = extended_entry(linen, entry, extras)
    state = gather_state(cls_name, entry, variables)
    missing, fallback = (
        put_rng_state(state, entry, linen, mode is True)
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
        node_at(module, rng.path).__class__ = MissingRngStream
    for rng in fallback:
        node_at(module, rng.path).__class__ = FallbackParamsStream
    if entry.rngs_nodes:
        serve_streams(linen, entry, module, strict=mode is True)
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
        if is_missing_mode(err):
            raise mode_error(cls_name, method, err) from err
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
    mode = resolve_mode(train)

    def capture(linen: nn.Module) -> Any:
        return _merged(linen, mode)[1]

    return wrapper.apply(variables, method=capture, rngs=rngs)
