"""Rng streams: NNX streams fed from Linen's, at init and at apply.

* init: the constructor gets an :class:`_Rngs` holding every Linen stream the
  caller passed; a stream it asks for that nobody passed (``dropout`` under the
  usual ``init(key, x)``) is derived from the params key.
* apply: every stored stream with tag ``t`` is seeded so that its first draw is
  exactly Linen's ``make_rng(t)`` (:func:`_linen_stream`); ``Rngs`` objects the
  module keeps are given the Linen streams they lack (:func:`_serve_streams`);
  a stream nobody passed raises in training (naming it) and gets a fixed key
  otherwise. ``to_nnx`` keeps that policy on the ``Rngs`` the module keeps
  (:func:`_serve_streams`), so the module it returns serves every name too.
* streams by any name: as with ``nnx.Rngs(0)`` (whose unknown names fall back to
  ``default``), a module may draw a stream of its own name (``rngs.augment()``);
  each gets its own key as above. While the module is built (init, and the
  layout ``apply`` traces), ``name in rngs`` answers as ``nnx.Rngs(0)`` given
  the params key would: true for ``default`` and ``params`` only, whatever else
  the caller passed to ``init`` (so the layout never depends on it); at apply,
  for the streams present: those the caller passed and those the module keeps.
* a method parameter ``rngs`` annotated as a PRNG key (``jax.Array``...,
  :data:`KEY_STREAM`, see :func:`_method_key`) gets ``make_rng("dropout")``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._state import _node_at

if TYPE_CHECKING:
    from nnxgen.runtime._graph import _Entry, _RngLeaf


def _stream_salt(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


_policy = threading.local()


@contextlib.contextmanager
def _missing_streams(
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


#: Attribute of a kept ``_Rngs`` holding ``(strict, cls_name)``: the policy its
#: draws follow outside a wrapper call (the module ``to_nnx`` returns).
_POLICY_ATTR = "_nnxgen_missing"


def _constructing() -> bool:
    """Inside a build of the module (init or the layout trace): a base key is set."""
    state = getattr(_policy, "state", None)
    return state is not None and state[0] is not None


def _missing_stream_error(
    name: str, cls_name: str = "", call: str = "apply"
) -> NnxgenError:
    who = f"{cls_name}: " if cls_name else ""
    return NnxgenError(
        f"{who}the NNX module draws from the rng stream {name!r} in training, but no "
        f"{name!r} rng was passed: call {call}(..., rngs={{{name!r}: key}})."
    )


def _derived_key(name: str, rngs: Any = None) -> jax.Array | None:
    """The key of stream ``name`` that nobody passed, per the policy in force.

    That of the enclosing :func:`_missing_streams` block; else, for a kept
    ``_Rngs`` of a module that ``to_nnx`` returned, the one recorded on it by
    :func:`_serve_streams`; else None (no such stream: ``nnx.Rngs``'s error).
    """
    state = getattr(_policy, "state", None)
    call = "apply"
    if state is None and rngs is not None:
        attached = vars(rngs).get(_POLICY_ATTR)
        if attached is not None:
            state, call = (None, *attached), "to_nnx"
    if state is None:
        return None
    base, strict, cls_name = state
    if strict and name != "params":
        raise _missing_stream_error(name, cls_name, call)
    if base is None:
        base = jax.random.key(0)
    return jax.random.fold_in(base, _stream_salt(name))


class _Rngs(nnx.Rngs):
    """``nnx.Rngs`` that follows :func:`_missing_streams` for streams it lacks.

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
            key = _derived_key(name, self)
            if key is not None:
                setattr(self, name, nnx.RngStream(key, tag=name))

    def __contains__(self, name: Any) -> bool:
        if _constructing():
            return name in ("default", "params")
        return isinstance(name, str) and isinstance(vars(self).get(name), nnx.RngStream)

    def __getattr__(self, name: str) -> Any:
        self._ensure(name)
        return super().__getattr__(name)

    def __getitem__(self, name: str) -> Any:
        self._ensure(name)
        return super().__getitem__(name)

    def fork(self, *args: Any, **kwargs: Any) -> _Rngs:
        return self._like(super().fork(*args, **kwargs))

    def split(self, *args: Any, **kwargs: Any) -> _Rngs:
        return self._like(super().split(*args, **kwargs))

    def _like(self, rngs: Any) -> _Rngs:
        out = _Rngs(**dict(rngs.items()))
        if (attached := vars(self).get(_POLICY_ATTR)) is not None:
            object.__setattr__(out, _POLICY_ATTR, attached)
        return out


class _MissingRngStream(nnx.RngStream):
    """Stands in for a stream whose Linen rng was not passed in training."""

    def __call__(self) -> jax.Array:
        state = getattr(_policy, "state", None)
        if state is None:  # outside a wrapper call: a module to_nnx returned
            raise _missing_stream_error(self.tag, call="to_nnx")
        raise _missing_stream_error(self.tag, state[2])


class FallbackParamsStream(nnx.RngStream):
    """The ``params`` stream in training when the caller passed no ``params`` rng:
    a fixed key, there only for modules that draw every stream to initialise
    lazily (``ToNNX``). nnxgen's NNX wrappers of Linen modules do not hand it to
    Linen once their variables exist, so a Linen layer that would fall back to
    ``params`` for its own stream (``nn.Dropout`` with no ``dropout`` rng)
    raises, as in plain Linen, instead of reusing one fixed mask."""


def missing_stream_error(name: str) -> NnxgenError:
    """:func:`_missing_stream_error` for the wrapper whose ``apply`` is running."""
    state = getattr(_policy, "state", None)
    return _missing_stream_error(name, state[2] if state else "")


@functools.cache
def _rngs_optional(cls: type, method: str) -> bool:
    param = inspect.signature(getattr(cls, method)).parameters.get("rngs")
    return param is not None and param.default is not inspect.Parameter.empty


#: The Linen stream that fills a method parameter ``rngs`` annotated as a key.
KEY_STREAM = "dropout"


def _method_rngs(linen: nn.Module, module: Any, method: str) -> Any:
    """The ``rngs`` to pass to an NNX method that takes one, or None to pass nothing.

    An optional ``rngs`` is left out when the module keeps its own streams
    (``self.rngs``, the flax convention: Dropout, MultiHeadAttention, RNN...),
    so the method draws from them, seeded as documented; otherwise (e.g.
    ``LSTMCell.initialize_carry`` with ``keep_rngs=False``) the Linen streams
    are passed. A ``rngs`` annotated as a PRNG key gets one: :func:`_method_key`.
    """
    spec = getattr(type(linen), "__nnxgen__", None)
    if method in getattr(spec, "key_rngs_methods", ()):
        return _method_key(linen, module, method)
    if _rngs_optional(module.__class__, method) and isinstance(
        getattr(module, "rngs", None), (nnx.Rngs, nnx.RngStream)
    ):
        return None
    return _Rngs(**_linen_rngs(linen))


def _method_key(linen: nn.Module, module: Any, method: str) -> jax.Array | None:
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
    state = getattr(_policy, "state", None)
    if state is not None and state[1]:
        who = f"{state[2]}.{method}" if state[2] else method
        raise NnxgenError(
            f"{who} takes a PRNG key argument `rngs`, filled from the Linen rng "
            f"stream {KEY_STREAM!r}, but no {KEY_STREAM!r} rng was passed in "
            f"training: call apply(..., rngs={{{KEY_STREAM!r}: key}})."
        )
    key = _derived_key(KEY_STREAM)
    return key if key is not None else _fixed_key(KEY_STREAM, ())


def _linen_rngs(module: nn.Module) -> dict[str, jax.Array]:
    scope = module.scope
    assert scope is not None
    return {name: module.make_rng(name) for name in sorted(scope.rngs)}


def _linen_stream(
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
        key = _typed_key(linen.make_rng(tag))
        if shape:
            return jax.random.split(key, shape), _zero_count(shape)
        return key, _zero_count(())
    key, data = folded
    key = _typed_key(key)
    if shape:
        return jnp.broadcast_to(key, shape), _layer_counts(data, shape)
    return key, _const_count(data)


#: Count offset between the layers of a stacked stream.
LAYER_STRIDE = 1 << 16


@functools.cache
def _layer_counts(data: int, shape: tuple[int, ...]) -> jax.Array:
    with _made_once():
        n = int(np.prod(shape))
        counts = [(data + i * LAYER_STRIDE) & 0xFFFFFFFF for i in range(n)]
        return jnp.asarray(np.asarray(counts, np.uint32).reshape(shape))


def _serve_streams(
    linen: nn.Module, entry: _Entry, module: Any, strict: bool = False
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
    ``_Rngs`` records that policy, so it holds in the module ``to_nnx``
    returns too (inside a wrapper call the call's own policy applies).
    """
    tags = sorted(linen.scope.rngs)  # type: ignore[union-attr]
    cls_name = type(linen).__name__
    for node in entry.rngs_nodes:
        rngs = _node_at(module, node.path)
        if isinstance(rngs, _Rngs):
            object.__setattr__(rngs, _POLICY_ATTR, (strict, cls_name))
        for tag in tags:
            if tag in node.streams:
                continue
            key, count = _linen_stream(linen, tag, node.shape)
            stream = nnx.RngStream(key, tag=tag)
            stream.count[...] = count
            setattr(rngs, tag, stream)


def _typed_key(key: jax.Array) -> jax.Array:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    typed: jax.Array = jax.random.wrap_key_data(key)
    return typed


def _put_rng_state(
    state: dict[Any, Any], entry: _Entry, linen: nn.Module, strict: bool
) -> tuple[list[_RngLeaf], list[_RngLeaf]]:
    """Fill rng keys from Linen streams (``make_rng(tag)``, in state order).

    A stream Linen does not have gets a fixed derived key; when ``strict``
    (training) it is returned in the first list so that it raises if drawn
    from, or, for ``params``, in the second (see :class:`FallbackParamsStream`).
    """
    scope = linen.scope
    assert scope is not None
    missing: list[_RngLeaf] = []
    fallback: list[_RngLeaf] = []
    for rng in entry.rng_leaves:
        count = _zero_count(rng.shape)
        if rng.tag in scope.rngs:
            key, count = _linen_stream(linen, rng.tag, rng.shape)
        else:
            key = _fixed_key(rng.tag, rng.shape)
            if strict:
                (fallback if rng.tag == "params" else missing).append(rng)
        node = state
        for k in rng.path:
            node = node.setdefault(k, {})
        node["key"] = key
        node["count"] = count
    return missing, fallback


@functools.cache
def _const_count(value: int) -> jax.Array:
    with _made_once():
        return jnp.asarray(value, jnp.uint32)


def _made_once() -> contextlib.ExitStack:
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
def _fixed_key(tag: str, shape: tuple[int, ...]) -> jax.Array:
    """The key of a stream nobody passed, outside training (a constant, made once)."""
    with _made_once():
        key = jax.random.fold_in(jax.random.key(0), _stream_salt(tag))
        return jax.random.split(key, shape) if shape else key


@functools.cache
def _zero_count(shape: tuple[int, ...]) -> jax.Array:
    with _made_once():
        return jnp.zeros(shape, jnp.uint32)
