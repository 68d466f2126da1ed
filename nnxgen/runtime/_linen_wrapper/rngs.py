"""The ``nnx.Rngs`` a Linen wrapper hands its NNX module, and the keys it makes once.

* init: the constructor gets an :class:`Rngs` holding every Linen stream the
  caller passed; a stream it asks for that nobody passed (``dropout`` under the
  usual ``init(key, x)``) is derived from the params key (the policy of
  :mod:`nnxgen.runtime._streams`).
* streams by any name: as with ``nnx.Rngs(0)`` (whose unknown names fall back to
  ``default``), a module may draw a stream of its own name (``rngs.augment()``);
  each gets its own key. While the module is built (init, and the layout
  ``apply`` traces), ``name in rngs`` answers as ``nnx.Rngs(0)`` given the
  params key would: true for ``default`` and ``params`` only, whatever else the
  caller passed to ``init`` (so the layout never depends on it); at apply, for
  the streams present: those the caller passed and those the module keeps.
* a method parameter ``rngs`` annotated as a PRNG key (``jax.Array``...,
  :data:`KEY_STREAM`, see :func:`method_key`) gets ``make_rng("dropout")``.

Seeding stored streams from Linen at apply is :mod:`.rng_state`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._streams import (
    POLICY_ATTR,
    constructing,
    current_policy,
    derived_key,
    stream_salt,
)

__all__ = [
    "KEY_STREAM",
    "Rngs",
    "const_count",
    "fixed_key",
    "linen_rngs",
    "made_once",
    "method_rngs",
    "typed_key",
    "zero_count",
]


class Rngs(nnx.Rngs):
    """``nnx.Rngs`` that follows the missing-stream policy for streams it lacks.

    A derived stream is tagged with the requested name, so at apply time it is
    refilled from Linen's stream of that name when the caller passes one.
    ``fork()`` / ``split()`` return this class too, so a module that keeps a
    fork (``self.rngs = rngs.fork()``, as ``nnx.Dropout`` and ``ToNNX`` do) and
    draws any stream name at call time is served the same way.

    Only public protocol is overridden: ``rngs.name`` (``__getattr__`` runs
    when no stream of that name exists), ``rngs["name"]`` and ``name in rngs``
    (while the module is built: ``default`` and ``params`` only, as
    ``nnx.Rngs(0)`` given the params key; otherwise the streams it holds).
    """

    def _ensure(self, name: str) -> None:
        if not name.startswith("_") and name not in vars(self):
            key = derived_key(name, self)
            if key is not None:
                setattr(self, name, nnx.RngStream(key, tag=name))

    def __contains__(self, name: Any) -> bool:
        if constructing():
            return name in ("default", "params")
        return isinstance(name, str) and isinstance(vars(self).get(name), nnx.RngStream)

    def __getattr__(self, name: str) -> Any:
        self._ensure(name)
        return super().__getattr__(name)

    def __getitem__(self, name: str) -> Any:
        self._ensure(name)
        return super().__getitem__(name)

    def fork(self, *args: Any, **kwargs: Any) -> Rngs:
        return self._like(super().fork(*args, **kwargs))

    def split(self, *args: Any, **kwargs: Any) -> Rngs:
        return self._like(super().split(*args, **kwargs))

    def _like(self, rngs: Any) -> Rngs:
        out = Rngs(**dict(rngs.items()))
        if (attached := vars(self).get(POLICY_ATTR)) is not None:
            object.__setattr__(out, POLICY_ATTR, attached)
        return out


@functools.cache
def _rngs_optional(cls: type, method: str) -> bool:
    param = inspect.signature(getattr(cls, method)).parameters.get("rngs")
    return param is not None and param.default is not inspect.Parameter.empty


#: The Linen stream that fills a method parameter ``rngs`` annotated as a key.
KEY_STREAM = "dropout"


def method_rngs(linen: nn.Module, module: Any, method: str) -> Any:
    """The ``rngs`` to pass to an NNX method that takes one, or None to pass nothing.

    An optional ``rngs`` is left out when the module keeps its own streams
    (``self.rngs``, the flax convention: Dropout, MultiHeadAttention, RNN...),
    so the method draws from them, seeded as documented; otherwise (e.g.
    ``LSTMCell.initialize_carry`` with ``keep_rngs=False``) the Linen streams
    are passed. A ``rngs`` annotated as a PRNG key gets one: :func:`method_key`.
    """
    spec = getattr(type(linen), "__nnxgen__", None)
    if method in getattr(spec, "key_rngs_methods", ()):
        return method_key(linen, module, method)
    if _rngs_optional(module.__class__, method) and isinstance(
        getattr(module, "rngs", None), (nnx.Rngs, nnx.RngStream)
    ):
        return None
    return Rngs(**linen_rngs(linen))


def method_key(linen: nn.Module, module: Any, method: str) -> jax.Array | None:
    """The PRNG key for a method parameter ``rngs: jax.Array`` (or None: pass nothing).

    Such keys drive stochastic depth and dropout (ConvNeXt's
    ``__call__(x, *, rngs: jax.Array, train)``), so they come from Linen's
    :data:`KEY_STREAM` (``dropout``) stream: ``make_rng("dropout")`` when the
    caller passed one. Otherwise an optional parameter is left out (the call
    pure NNX makes without a key); a required one gets, at init, a key derived
    from the params key (as a ``dropout`` stream is); at apply in training, an
    error naming the stream; at apply outside training, a fixed key
    (``fold_in(key(0), crc32("dropout"))``), as a ``dropout`` stream gets.
    """
    scope = linen.scope
    assert scope is not None
    if KEY_STREAM in scope.rngs:
        return linen.make_rng(KEY_STREAM)
    if _rngs_optional(module.__class__, method):
        return None
    state = current_policy()
    if state is not None and state[1]:
        who = f"{state[2]}.{method}" if state[2] else method
        raise NnxgenError(
            f"{who} takes a PRNG key argument `rngs`, filled from the Linen rng "
            f"stream {KEY_STREAM!r}, but no {KEY_STREAM!r} rng was passed in "
            f"training: call apply(..., rngs={{{KEY_STREAM!r}: key}})."
        )
    key = derived_key(KEY_STREAM)
    return key if key is not None else fixed_key(KEY_STREAM, ())


def linen_rngs(module: nn.Module) -> dict[str, jax.Array]:
    """One ``make_rng`` per Linen stream the caller passed."""
    scope = module.scope
    assert scope is not None
    return {name: module.make_rng(name) for name in sorted(scope.rngs)}


def typed_key(key: jax.Array) -> jax.Array:
    """``key`` as a typed PRNG key (raw ``uint32`` key data wrapped)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    typed: jax.Array = jax.random.wrap_key_data(key)
    return typed


# ---------------------------------------------------------------------------
# Constants made once.


def made_once() -> contextlib.ExitStack:
    """Context for the few constants the runtime makes once and caches.

    They are concrete even when first needed inside a trace, and their one
    host-to-device transfer is allowed even under a caller's
    ``jax.transfer_guard("disallow")`` (Kauldron's evaluators set one).
    """
    stack = contextlib.ExitStack()
    stack.enter_context(jax.transfer_guard("allow"))
    stack.enter_context(jax.ensure_compile_time_eval())
    return stack


@functools.cache
def const_count(value: int) -> jax.Array:
    """A stream count of ``value`` (a constant, made once)."""
    with made_once():
        return jnp.asarray(value, jnp.uint32)


@functools.cache
def fixed_key(tag: str, shape: tuple[int, ...]) -> jax.Array:
    """The key of a stream nobody passed, outside training (a constant, made once)."""
    with made_once():
        key = jax.random.fold_in(jax.random.key(0), stream_salt(tag))
        return jax.random.split(key, shape) if shape else key


@functools.cache
def zero_count(shape: tuple[int, ...]) -> jax.Array:
    """Zero stream counts of ``shape`` (a constant, made once)."""
    with made_once():
        return jnp.zeros(shape, jnp.uint32)
