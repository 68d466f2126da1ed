"""Rng streams nobody passed: the policy of the wrapper call running now.

Shared by both wrapper kinds. A Linen wrapper of an NNX module sets the policy
for the duration of a build or a call (:func:`missing_streams`): while the
module is constructed (init, and the layout ``apply`` traces) a stream the
caller did not pass gets a key derived from the params key; at apply in
training drawing one raises, naming it (:class:`MissingRngStream`); outside
training it gets a fixed key. The ``params`` stream in training with no
``params`` rng is a :class:`FallbackParamsStream`, which NNX wrappers of Linen
modules hold back from Linen (and report with :func:`missing_stream_error`).
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import jax
from flax import nnx

from nnxgen.runtime._errors import NnxgenError

__all__ = [
    "POLICY_ATTR",
    "FallbackParamsStream",
    "MissingRngStream",
    "constructing",
    "current_policy",
    "derived_key",
    "missing_stream_error",
    "missing_streams",
    "stream_error",
    "stream_salt",
]


def stream_salt(name: str) -> int:
    """What a stream's name folds into a base key (``crc32``)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


_policy = threading.local()


@contextlib.contextmanager
def missing_streams(
    base: jax.Array | None, strict: bool, cls_name: str = ""
) -> Iterator[None]:
    """How a stream that nobody passed is handled inside this block.

    ``strict`` (training at apply): raise, naming the stream (except for
    ``params``, drawn at apply only to initialise something lazily, e.g. by
    ``nnx.bridge.ToNNX``, which draws every stream it keeps); otherwise derive
    its key as ``fold_in(base, crc32(name))`` (at init ``base`` is the params
    key; at apply in eval mode it is ``key(0)``: deterministic, never used for
    dropout, which only draws in training).
    """
    previous = getattr(_policy, "state", None)
    _policy.state = (base, strict, cls_name)
    try:
        yield
    finally:
        _policy.state = previous


def current_policy() -> tuple[jax.Array | None, bool, str] | None:
    """``(base, strict, cls_name)`` of the enclosing :func:`missing_streams`, or None."""
    state: tuple[jax.Array | None, bool, str] | None = getattr(_policy, "state", None)
    return state


#: Attribute of a kept ``Rngs`` holding ``(strict, cls_name)``: the policy its
#: draws follow outside a wrapper call (the module ``to_nnx`` returns).
POLICY_ATTR = "_nnxgen_missing"


def constructing() -> bool:
    """Inside a build of the module (init or the layout trace): a base key is set."""
    state = current_policy()
    return state is not None and state[0] is not None


def stream_error(name: str, cls_name: str = "", call: str = "apply") -> NnxgenError:
    """The error for a draw from stream ``name`` that nobody passed, in training."""
    who = f"{cls_name}: " if cls_name else ""
    return NnxgenError(
        f"{who}the NNX module draws from the rng stream {name!r} in training, but no "
        f"{name!r} rng was passed: call {call}(..., rngs={{{name!r}: key}})."
    )


def missing_stream_error(name: str) -> NnxgenError:
    """:func:`stream_error` for the wrapper whose ``apply`` is running."""
    state = current_policy()
    return stream_error(name, state[2] if state else "")


def derived_key(name: str, rngs: Any = None) -> jax.Array | None:
    """The key of stream ``name`` that nobody passed, per the policy in force.

    That of the enclosing :func:`missing_streams` block; else, for a kept
    ``Rngs`` of a module that ``to_nnx`` returned, the one recorded on it
    (:data:`POLICY_ATTR`); else None (no such stream: ``nnx.Rngs``'s error).
    """
    state: Any = current_policy()
    call = "apply"
    if state is None and rngs is not None:
        attached = vars(rngs).get(POLICY_ATTR)
        if attached is not None:
            state, call = (None, *attached), "to_nnx"
    if state is None:
        return None
    base, strict, cls_name = state
    if strict and name != "params":
        raise stream_error(name, cls_name, call)
    if base is None:
        base = jax.random.key(0)
    return jax.random.fold_in(base, stream_salt(name))


class MissingRngStream(nnx.RngStream):
    """Stands in for a stream whose Linen rng was not passed in training."""

    def __call__(self) -> jax.Array:
        state = current_policy()
        if state is None:  # outside a wrapper call: a module to_nnx returned
            raise stream_error(self.tag, call="to_nnx")
        raise stream_error(self.tag, state[2])


class FallbackParamsStream(nnx.RngStream):
    """The ``params`` stream in training when the caller passed no ``params`` rng:
    a fixed key, there only for modules that draw every stream to initialise
    lazily (``ToNNX``). nnxgen's NNX wrappers of Linen modules do not hand it to
    Linen once their variables exist, so a Linen layer that would fall back to
    ``params`` for its own stream (``nn.Dropout`` with no ``dropout`` rng)
    raises, as in plain Linen, instead of reusing one fixed mask."""
