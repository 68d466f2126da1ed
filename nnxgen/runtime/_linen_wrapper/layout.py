"""The layout of one wrapper configuration: what ``apply`` needs, as plain data.

An :class:`Entry` holds the graph definitions per mode, the variable paths,
collections, shapes and dtypes, the rng streams and the ``nnx.Rngs`` the module
keeps. It is computed once per (class, constructor arguments) by
:mod:`.layout_cache`, and read by :mod:`.state`, :mod:`.rng_state`,
:mod:`.immutable` and :mod:`.call`. The runtime's caches share one lock and
one size (:data:`cache_lock`, :data:`CACHE_SIZE`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Hashable
from typing import Any

__all__ = ["CACHE_SIZE", "Entry", "Leaf", "RngLeaf", "RngsNode", "cache_lock"]


@dataclasses.dataclass
class Leaf:
    """One variable of the layout."""

    path: tuple[Any, ...]
    collection: str
    shape: tuple[int, ...]
    dtype: Any


@dataclasses.dataclass
class RngLeaf:
    """One rng stream of the layout."""

    path: tuple[Any, ...]  # path of the RngStream node
    tag: str
    shape: tuple[int, ...]


@dataclasses.dataclass
class RngsNode:
    """One ``nnx.Rngs`` the module keeps."""

    path: tuple[Any, ...]  # path of an ``nnx.Rngs`` the module keeps
    streams: frozenset[str]
    shape: tuple[int, ...]  # key shape of its streams (stacked under nnx.vmap)


@dataclasses.dataclass
class Entry:
    """Everything apply needs about one (class, constructor arguments)."""

    graphdefs: dict[bool | None, Any]
    leaves: list[Leaf]
    rng_leaves: list[RngLeaf]
    collections: tuple[str, ...]
    counts: dict[str, int]
    has_mode: bool
    rngs_nodes: list[RngsNode] = dataclasses.field(default_factory=list)
    sows: bool = False  # some module in the graph calls ``sow``
    #: Layouts with state that methods added after construction (caches made
    #: by ``init_cache``, lazily created parameters), by variables signature.
    extended: dict[Hashable, Entry] = dataclasses.field(default_factory=dict)
    #: Graph definitions whose variables of some collections are read-only
    #: (``immutable``), by (graph key, frozenset of those collections).
    read_only: dict[Hashable, Any] = dataclasses.field(default_factory=dict)


#: Entries (and init facts) kept per cache before the oldest is dropped.
CACHE_SIZE = 512

#: Held while any runtime cache is written.
cache_lock = threading.Lock()
