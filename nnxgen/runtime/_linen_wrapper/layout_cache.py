"""The layout cache: one :class:`.layout.Entry` per wrapper configuration.

``apply`` never re-runs the NNX constructor. The layout of the module (graph
definitions per mode, variable paths/shapes/collections, rng streams, kept
``Rngs``) is computed once per (class, constructor arguments) by tracing the
constructor abstractly (:func:`abstract_entry`: no initializer runs), and
extended, also once, for state that methods add after construction
(:func:`extended_entry`: caches made by ``init_cache``, lazy parameters).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._linen_wrapper.attach import attach
from nnxgen.runtime._linen_wrapper.build import construct
from nnxgen.runtime._linen_wrapper.keys import Unkeyable, key_of
from nnxgen.runtime._linen_wrapper.layout import (
    CACHE_SIZE,
    Entry,
    Leaf,
    RngLeaf,
    RngsNode,
    cache_lock,
)
from nnxgen.runtime._linen_wrapper.mode import has_mode_attributes, set_mode
from nnxgen.runtime._linen_wrapper.rngs import made_once
from nnxgen.runtime._linen_wrapper.sow import module_sows
from nnxgen.runtime._linen_wrapper.state import collection_of

__all__ = ["CACHE", "abstract_entry", "entry_for", "extended_entry"]

#: Layout entries by wrapper key (:func:`.keys.key_of`), least recently used first.
CACHE: collections.OrderedDict[Hashable, Entry] = collections.OrderedDict()


def _analyse(module: Any) -> Entry:
    """Collect layout facts of a (possibly abstract) NNX module."""
    has_mode = has_mode_attributes(module)
    graphdefs: dict[bool | None, Any] = {}
    for mode in (True, False, None):
        if has_mode:
            set_mode(module, mode)
        graphdefs[mode] = nnx.graphdef(module)
    leaves: list[Leaf] = []
    rng_leaves: list[RngLeaf] = []
    counts: dict[str, int] = {}
    for path, var in nnx.to_flat_state(nnx.state(module)):
        if isinstance(var, nnx.RngKey):
            value = var.get_value()
            rng_leaves.append(RngLeaf(tuple(path[:-1]), var.tag, tuple(value.shape)))
            continue
        if isinstance(var, nnx.RngCount):
            continue
        col = collection_of(var.__class__)
        value = var.get_value() if isinstance(var, nnx.Variable) else var
        leaves.append(
            Leaf(
                tuple(path),
                col,
                tuple(getattr(value, "shape", ())),
                getattr(value, "dtype", None),
            )
        )
        counts[col] = counts.get(col, 0) + 1
    rngs_nodes = []
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Rngs):
            rngs: Any = node
            streams = dict(rngs.items())
            shape = next(
                (tuple(st.key.get_value().shape) for st in streams.values()), ()
            )
            rngs_nodes.append(RngsNode(tuple(path), frozenset(streams), shape))
    return Entry(
        graphdefs=graphdefs,
        leaves=leaves,
        rng_leaves=rng_leaves,
        collections=tuple(sorted(counts)),
        counts=counts,
        has_mode=has_mode,
        sows=module_sows(module),
        rngs_nodes=rngs_nodes,
    )


def entry_for(wrapper: nn.Module) -> Entry:
    try:
        key: Hashable | None = key_of(wrapper)
    except Unkeyable:
        key = None
    if key is not None:
        with cache_lock:
            entry = CACHE.get(key)
            if entry is not None:
                CACHE.move_to_end(key)
                return entry
    entry = abstract_entry(wrapper)
    if key is not None:
        with cache_lock:
            CACHE[key] = entry
            if len(CACHE) > CACHE_SIZE:
                CACHE.popitem(last=False)
    return entry


def abstract_entry(
    wrapper: nn.Module, extras: Sequence[tuple[str, tuple[Any, ...], Any]] = ()
) -> Entry:
    """The layout of ``wrapper``'s NNX module, traced (no initializer runs).

    The build gets a ``params`` stream (an abstract key), as ``init`` does, so
    constructors that split and vmap their rngs (stacked layers) trace.
    ``extras`` are variables added after construction, attached by path.
    Raw-array state (as in ``nnx.WeightNorm``) stays state, which
    ``nnx.eval_shape`` would make static; raw arrays the constructor computes
    from constants are made concretely (they are static when traced), and a
    constructor that needs concrete values of key-dependent arrays is built
    for real, once per configuration. No variable is sharded while building
    (:func:`_compat.layout_variables`): the layout needs no mesh, also where
    ``init`` ran under one and ``apply`` runs outside it.
    """
    box: dict[str, Entry] = {}

    def build(key: jax.Array, constants: bool) -> tuple[Any, ...]:
        with jax.ensure_compile_time_eval() if constants else contextlib.nullcontext():
            module = construct(wrapper, {"params": key})
        if not constants and _holds_tracers(module):
            raise _RawArrays
        for col, path, value in extras:
            attach(module, col, path, value, type(wrapper).__name__)
        restore(module)
        box["entry"] = _analyse(module)
        return ()

    with made_once():
        key = jax.random.key(0)
    with _compat.layout_variables() as restore:
        _trace_layout(build, key)
    return box["entry"]


def _trace_layout(
    build: Callable[[jax.Array, bool], tuple[Any, ...]], key: jax.Array
) -> None:
    """Run ``build`` abstractly, concretely where the constructor needs it."""
    try:
        try:
            jax.eval_shape(lambda k: build(k, False), key)
        except _RawArrays:
            # Raw-array attributes (LPIPS' shift and scale) are state in pure
            # NNX but static when traced: build with the constants the
            # constructor computes concrete; only key-dependent values
            # (initializers) are traced.
            jax.eval_shape(lambda k: build(k, True), key)
    except _NEEDS_CONCRETE:
        # The constructor turns an array that depends on the key into a Python
        # or numpy value: build it for real, once per configuration, eagerly
        # even when called inside a caller's trace.
        with made_once():
            build(key, True)


class _RawArrays(Exception):
    pass


def _holds_tracers(module: Any) -> bool:
    """Whether tracing left arrays in attributes (static, where pure NNX has state)."""
    state = {id(x) for x in jax.tree_util.tree_leaves(nnx.state(module))}
    return any(
        isinstance(node, jax.core.Tracer) and id(node) not in state
        for _, node in nnx.iter_graph(module)
    )


#: Errors of a constructor that cannot be traced abstractly.
_NEEDS_CONCRETE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


def extended_entry(
    linen: nn.Module, entry: Entry, extras: Sequence[tuple[str, tuple[Any, ...], Any]]
) -> Entry:
    """``entry`` plus the variables in ``extras`` (cached per their layout)."""
    sig = tuple(
        sorted(
            (
                col,
                tuple(map(str, path)),
                tuple(getattr(v, "shape", ())),
                str(getattr(v, "dtype", "")),
            )
            for col, path, v in extras
        )
    )
    found = entry.extended.get(sig)
    if found is None:
        found = abstract_entry(linen, extras)
        with cache_lock:
            entry.extended[sig] = found
    return found
