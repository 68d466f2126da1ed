"""Cached graph definitions: what ``apply`` needs about one wrapper configuration.

``apply`` never re-runs the NNX constructor. The layout of the module (graph
definitions per mode, variable paths/shapes/collections, rng streams, kept
``Rngs``) is computed once per (class, constructor arguments) by tracing the
constructor abstractly (:func:`_abstract_entry`: no initializer runs), and
extended, also once, for state that methods add after construction
(:func:`_extended_entry`: caches made by ``init_cache``, lazy parameters).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._build import _construct
from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._keys import Unkeyable, key_of
from nnxgen.runtime._mode import _has_mode_attributes, _set_mode
from nnxgen.runtime._rngs import _made_once
from nnxgen.runtime._sow import module_sows
from nnxgen.runtime._state import _collection_of, _path_str


@dataclasses.dataclass
class _Leaf:
    path: tuple[Any, ...]
    collection: str
    shape: tuple[int, ...]
    dtype: Any


@dataclasses.dataclass
class _RngLeaf:
    path: tuple[Any, ...]  # path of the RngStream node
    tag: str
    shape: tuple[int, ...]


@dataclasses.dataclass
class _RngsNode:
    path: tuple[Any, ...]  # path of an ``nnx.Rngs`` the module keeps
    streams: frozenset[str]
    shape: tuple[int, ...]  # key shape of its streams (stacked under nnx.vmap)


@dataclasses.dataclass
class _Entry:
    """Everything apply needs about one (class, constructor arguments)."""

    graphdefs: dict[bool | None, Any]
    leaves: list[_Leaf]
    rng_leaves: list[_RngLeaf]
    collections: tuple[str, ...]
    counts: dict[str, int]
    has_mode: bool
    rngs_nodes: list[_RngsNode] = dataclasses.field(default_factory=list)
    sows: bool = False  # some module in the graph calls ``sow``
    #: Layouts with state that methods added after construction (caches made
    #: by ``init_cache``, lazily created parameters), by variables signature.
    extended: dict[Hashable, _Entry] = dataclasses.field(default_factory=dict)
    #: Graph definitions whose variables of some collections are read-only
    #: (``_immutable``), by (graph key, frozenset of those collections).
    read_only: dict[Hashable, Any] = dataclasses.field(default_factory=dict)


_CACHE: collections.OrderedDict[Hashable, _Entry] = collections.OrderedDict()


_CACHE_SIZE = 512


_cache_lock = threading.Lock()


#: Raised by :func:`_key_of` for an argument the cache cannot key.
_Unhashable = Unkeyable


def _key_of(value: Any) -> Hashable:
    """The cache key of a wrapper (or argument): structural, computed from the
    current contents on every call (see :mod:`._keys`); raises ``_Unhashable``."""
    return key_of(value)


def _analyse(module: Any) -> _Entry:
    """Collect layout facts of a (possibly abstract) NNX module."""
    has_mode = _has_mode_attributes(module)
    graphdefs: dict[bool | None, Any] = {}
    for mode in (True, False, None):
        if has_mode:
            _set_mode(module, mode)
        graphdefs[mode] = nnx.graphdef(module)
    leaves: list[_Leaf] = []
    rng_leaves: list[_RngLeaf] = []
    counts: dict[str, int] = {}
    for path, var in nnx.to_flat_state(nnx.state(module)):
        if isinstance(var, nnx.RngKey):
            value = var.get_value()
            rng_leaves.append(_RngLeaf(tuple(path[:-1]), var.tag, tuple(value.shape)))
            continue
        if isinstance(var, nnx.RngCount):
            continue
        col = _collection_of(var.__class__)
        value = var.get_value() if isinstance(var, nnx.Variable) else var
        leaves.append(
            _Leaf(
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
            rngs_nodes.append(_RngsNode(tuple(path), frozenset(streams), shape))
    return _Entry(
        graphdefs=graphdefs,
        leaves=leaves,
        rng_leaves=rng_leaves,
        collections=tuple(sorted(counts)),
        counts=counts,
        has_mode=has_mode,
        sows=module_sows(module),
        rngs_nodes=rngs_nodes,
    )


def _entry_for(wrapper: nn.Module) -> _Entry:
    try:
        key: Hashable | None = _key_of(wrapper)
    except _Unhashable:
        key = None
    if key is not None:
        with _cache_lock:
            entry = _CACHE.get(key)
            if entry is not None:
                _CACHE.move_to_end(key)
                return entry
    entry = _abstract_entry(wrapper)
    if key is not None:
        with _cache_lock:
            _CACHE[key] = entry
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return entry


def _abstract_entry(
    wrapper: nn.Module, extras: Sequence[tuple[str, tuple[Any, ...], Any]] = ()
) -> _Entry:
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
    box: dict[str, _Entry] = {}

    def build(key: jax.Array, constants: bool) -> tuple[Any, ...]:
        with jax.ensure_compile_time_eval() if constants else contextlib.nullcontext():
            module = _construct(wrapper, {"params": key})
        if not constants and _holds_tracers(module):
            raise _RawArrays
        for col, path, value in extras:
            _attach(module, col, path, value, type(wrapper).__name__)
        restore(module)
        box["entry"] = _analyse(module)
        return ()

    with _made_once():
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
        with _made_once():
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


def _attach(
    module: Any, col: str, path: tuple[Any, ...], value: Any, cls_name: str
) -> None:
    """Add a variable that a method created after construction (an ``init_cache``
    cache, a lazily created parameter) to a freshly built module.

    Only where such a variable can have come from: a registered collection
    (``cache``, ``params``, ...), an array, and a path whose parent is a module
    (or other ``nnx.Pytree``) that has no such attribute yet or holds ``None``
    there (``MultiHeadAttention`` keeps ``cached_key = None`` until
    ``init_cache``). Anything else is reported as not belonging to the module.
    """
    try:
        var_type = _compat.variable_type(col)
    except LookupError:
        raise NnxgenError(
            f"{cls_name}: unknown variable collection {col!r}; drop it from the "
            f"variables, or convert checkpoints of other wrappers with nnxgen.convert."
        ) from None
    parent = module
    try:
        for i, k in enumerate(path[:-1]):
            if _compat.is_linen_bridge(parent) and isinstance(k, str):
                # A Linen module inside NNX (``nnx.bridge.ToNNX`` or an nnxgen NNX
                # wrapper) made its variables on its first call: ToNNX's layout,
                # nested dicts under the attribute named by the first path element.
                _attach_bridged(parent, var_type, path[i:], value, cls_name, col, path)
                return
            if (
                isinstance(parent, nnx.Pytree)
                and isinstance(k, str)
                and not k.isdigit()
            ):
                parent = getattr(parent, k)
            else:
                parent = parent[int(k) if isinstance(k, str) and k.isdigit() else k]
    except (AttributeError, KeyError, IndexError, TypeError):
        parent = None
    name = path[-1]
    if (
        not isinstance(parent, nnx.Pytree)
        or not isinstance(name, str)
        or getattr(parent, name, None) is not None
        or not hasattr(value, "shape")
    ):
        raise _unknown_variables(cls_name, col, path)
    setattr(parent, name, var_type(jnp.zeros(value.shape, value.dtype)))


def _unknown_variables(cls_name: str, col: str, path: tuple[Any, ...]) -> NnxgenError:
    return NnxgenError(
        f"{cls_name}: unknown variables {_path_str(col, path)}; the module has "
        f"no such state. Pass variables made by {cls_name}(...).init."
    )


def _attach_bridged(
    bridge: Any,
    var_type: Any,
    rest: tuple[Any, ...],
    value: Any,
    cls_name: str,
    col: str,
    path: tuple[Any, ...],
) -> None:
    """:func:`_attach` below a Linen module run in ToNNX's layout: the variable
    at ``rest`` (an attribute, then at least one nested dict key), as
    ``linen_vars_to_nnx`` places it. (A variable directly on the attribute is
    ``_attach``'s own case: its parent is the bridge module.)"""
    name, *inner = map(str, rest)
    current = vars(bridge).get(name)
    tree = dict(current) if isinstance(current, dict) else {}
    node = tree
    for k in inner[:-1]:
        node = node.setdefault(k, {})
    if inner[-1] in node or not hasattr(value, "shape"):
        raise _unknown_variables(cls_name, col, path)
    node[inner[-1]] = var_type(jnp.zeros(value.shape, value.dtype))
    setattr(bridge, name, nnx.data(tree))


def _extended_entry(
    linen: nn.Module, entry: _Entry, extras: Sequence[tuple[str, tuple[Any, ...], Any]]
) -> _Entry:
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
        found = _abstract_entry(linen, extras)
        with _cache_lock:
            entry.extended[sig] = found
    return found
