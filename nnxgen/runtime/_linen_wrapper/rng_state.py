"""Apply: seed the NNX module's rng streams from Linen's ``make_rng``.

Every stored stream with tag ``t`` is seeded so that its first draw is exactly
Linen's ``make_rng(t)`` (:func:`linen_stream`); ``Rngs`` objects the module
keeps are given the Linen streams they lack (:func:`serve_streams`); a stream
nobody passed raises in training (naming it) and gets a fixed key otherwise.
``to_nnx`` keeps that policy on the ``Rngs`` the module keeps, so the module it
returns serves every name too.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._linen_wrapper.layout import Entry, RngLeaf
from nnxgen.runtime._linen_wrapper.rngs import (
    Rngs,
    const_count,
    fixed_key,
    made_once,
    typed_key,
    zero_count,
)
from nnxgen.runtime._linen_wrapper.state import node_at
from nnxgen.runtime._streams import POLICY_ATTR

__all__ = ["LAYER_STRIDE", "linen_stream", "put_rng_state", "serve_streams"]


def linen_stream(
    linen: nn.Module, tag: str, shape: tuple[int, ...] = ()
) -> tuple[jax.Array, Any]:
    """(key, count) for an NNX stream whose first draw is ``linen.make_rng(tag)``.

    ``make_rng`` is ``fold_in(base_key, h)`` with ``h`` a hash of the scope path
    and call counter computed in Python; NNX's ``RngStream`` draws
    ``fold_in(key, count)``. Handing NNX ``(base_key, h)`` makes its first draw
    exactly ``make_rng(tag)`` (later draws use ``h + 1``, ...) without hashing
    twice, so the compiled program does what pure NNX does. A stacked stream
    (key shape ``(depth,)``, built under ``nnx.vmap``) gets ``base_key`` for
    every layer and counts ``h + i * 2**16``: layer 0's first draw is
    ``make_rng(tag)``, layer ``i`` draws ``fold_in(base_key, h + i * 2**16 + j)``
    -- distinct for fewer than 65,536 draws per layer and call, with no key
    derivation in the program. Where the flax detail is unavailable (see
    ``_compat.linen_fold``) the stream starts at ``make_rng(tag)`` itself (its
    draws are then other, equally valid keys).
    """
    folded = _compat.linen_fold(linen, tag)
    if folded is None:
        key = typed_key(linen.make_rng(tag))
        if shape:
            return jax.random.split(key, shape), zero_count(shape)
        return key, zero_count(())
    key, data = folded
    key = typed_key(key)
    if shape:
        return jnp.broadcast_to(key, shape), _layer_counts(data, shape)
    return key, const_count(data)


#: Count offset between the layers of a stacked stream.
LAYER_STRIDE = 1 << 16


@functools.cache
def _layer_counts(data: int, shape: tuple[int, ...]) -> jax.Array:
    with made_once():
        n = int(np.prod(shape))
        counts = [(data + i * LAYER_STRIDE) & 0xFFFFFFFF for i in range(n)]
        return jnp.asarray(np.asarray(counts, np.uint32).reshape(shape))


def serve_streams(
    linen: nn.Module, entry: Entry, module: Any, strict: bool = False
) -> None:
    """Give every ``nnx.Rngs`` the module keeps the Linen streams it lacks.

    Modules that keep their ``Rngs`` (DropPath's ``self.rngs.dropout()``, a
    VAE's ``self.rngs.noise()``) draw stream names at call time that the
    constructor never asked for; pure NNX would fall back to ``default``.
    Here each such stream is Linen's stream of that name (first draw
    ``make_rng(name)``; split per layer for stacked ``Rngs``), added before the
    method runs so that draws inside ``nnx.scan`` / ``nnx.vmap`` work too.
    Streams the caller did not pass are left out: drawing one in training
    (``strict``) raises, naming it, otherwise it gets a fixed key. Each kept
    ``Rngs`` records that policy, so it holds in the module ``to_nnx``
    returns too (inside a wrapper call the call's own policy applies).
    """
    tags = sorted(linen.scope.rngs)  # type: ignore[union-attr]
    cls_name = type(linen).__name__
    for node in entry.rngs_nodes:
        rngs = node_at(module, node.path)
        if isinstance(rngs, Rngs):
            object.__setattr__(rngs, POLICY_ATTR, (strict, cls_name))
        for tag in tags:
            if tag in node.streams:
                continue
            key, count = linen_stream(linen, tag, node.shape)
            stream = nnx.RngStream(key, tag=tag)
            stream.count[...] = count
            setattr(rngs, tag, stream)


def put_rng_state(
    state: dict[Any, Any], entry: Entry, linen: nn.Module, strict: bool
) -> tuple[list[RngLeaf], list[RngLeaf]]:
    """Fill rng keys from Linen streams (``make_rng(tag)``, in state order).

    A stream Linen does not have gets a fixed derived key; when ``strict``
    (training) it is returned in the first list so that it raises if drawn
    from, or, for ``params``, in the second (see ``FallbackParamsStream``).
    """
    scope = linen.scope
    assert scope is not None
    missing: list[RngLeaf] = []
    fallback: list[RngLeaf] = []
    for rng in entry.rng_leaves:
        count = zero_count(rng.shape)
        if rng.tag in scope.rngs:
            key, count = linen_stream(linen, rng.tag, rng.shape)
        else:
            key = fixed_key(rng.tag, rng.shape)
            if strict:
                (fallback if rng.tag == "params" else missing).append(rng)
        node = state
        for k in rng.path:
            node = node.setdefault(k, {})
        node["key"] = key
        node["count"] = count
    return missing, fallback
