"""Private flax detail: ``nnx.RngStream`` draws, several at once.

``draw_streams`` relies on ``nnx.RngStream.__call__`` being
``fold_in(key, count)`` then ``count += 1``; eager draws from several streams
are done in one jitted dispatch. Check: :func:`stream_draw_matches`. Fallback
(a trace, a stacked stream, or a flax whose draw differs): each stream's own
``stream()``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["draw_streams", "stream_draw_matches"]


@jax.jit
def _fold_all(
    keys: list[jax.Array], counts: list[jax.Array]
) -> tuple[list[jax.Array], list[jax.Array]]:
    return [jax.random.fold_in(k, c) for k, c in zip(keys, counts)], [
        c + 1 for c in counts
    ]


def draw_streams(streams: list[Any]) -> list[jax.Array]:
    """``[stream() for stream in streams]`` (``nnx.RngStream`` s): the same keys
    and counts, in one dispatch when every stream is eager and unstacked."""
    keys = [s.key.get_value() for s in streams]
    counts = [s.count.get_value() for s in streams]
    if (
        not streams
        or not stream_draw_matches()
        or any(isinstance(x, jax.core.Tracer) or x.shape for x in keys + counts)
    ):
        return [s() for s in streams]
    new_keys, new_counts = _fold_all(keys, counts)
    for s, c in zip(streams, new_counts):
        s.count.set_value(c)
    drawn: list[jax.Array] = new_keys
    return drawn


@functools.cache
def stream_draw_matches() -> bool:
    with jax.ensure_compile_time_eval():
        a = nnx.Rngs(params=3, dropout=4)
        b = nnx.Rngs(params=3, dropout=4)
        a.params()
        b.params()
        mine = [a.params(), a.dropout()]
        theirs = _fold_all(
            [b.params.key.get_value(), b.dropout.key.get_value()],
            [b.params.count.get_value(), b.dropout.count.get_value()],
        )
        return all(
            bool(jnp.array_equal(jax.random.key_data(x), jax.random.key_data(y)))
            for x, y in zip(mine, theirs[0])
        ) and [int(c) for c in theirs[1]] == [
            int(a.params.count.get_value()),
            int(a.dropout.count.get_value()),
        ]
