"""Private flax detail: Linen's ``make_rng`` as (base key, fold data).

``linen_fold`` relies on ``Scope.rngs[t].rng`` / ``.suffix``,
``Scope.rng_counters``, ``Scope._check_valid`` / ``_validate_trace_level`` and
the hash of ``flax.core.scope._fold_in_static``. Check: :func:`linen_fold_works`
(once per process, against ``make_rng`` itself). Fallback: start the stream at
``make_rng(t)`` itself (one more hash in the program; the draws are then other
keys than ``make_rng``'s, still a function of the caller's key).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import jax
import jax.numpy as jnp
from flax import config as flax_config
from flax import linen as nn

from nnxgen.runtime._compat.linen_context import outside_linen

__all__ = ["linen_fold", "linen_fold_works"]


def _static_hash(data: tuple[Any, ...]) -> int:
    """The uint32 ``flax.core.scope._fold_in_static`` folds into a key for ``data``."""
    m = hashlib.sha1()
    for x in data:
        if flax_config.flax_fix_rng_separator:
            m.update(b"\00")
        if isinstance(x, str):
            m.update(x.encode("utf-8"))
        else:
            m.update(x.to_bytes((x.bit_length() + 7) // 8, byteorder="big"))
    return int.from_bytes(m.digest()[:4], byteorder="big")


def _raw_fold(linen: nn.Module, tag: str) -> tuple[jax.Array, int] | None:
    scope: Any = linen.scope
    lazy = scope.rngs.get(tag) if scope is not None else None
    if (
        lazy is None
        or not hasattr(lazy, "suffix")
        or not hasattr(scope, "rng_counters")
        or not isinstance(lazy.rng, jax.Array)  # e.g. Kauldron's own PRNGKey objects
    ):
        return None
    # exactly what Scope.make_rng does before folding
    scope._check_valid()
    scope._validate_trace_level()
    scope.rng_counters[tag] += 1
    return lazy.rng, _static_hash((*lazy.suffix, scope.rng_counters[tag]))


def linen_fold(linen: nn.Module, tag: str) -> tuple[jax.Array, int] | None:
    """``(key, data)`` with ``fold_in(key, data) == linen.make_rng(tag)``, advancing
    the stream as ``make_rng`` does; None where this cannot be done (then call
    ``make_rng``). Checked once per process against ``make_rng`` itself.
    """
    if not linen_fold_works():
        return None
    return _raw_fold(linen, tag)


class _FoldProbe(nn.Module):
    use_fold: bool

    @nn.compact
    def __call__(self) -> Any:
        child = _FoldChild(self.use_fold, name="child")
        if self.use_fold:
            return _raw_fold(self, "p"), _raw_fold(self, "p"), child()
        return self.make_rng("p"), self.make_rng("p"), child()


class _FoldChild(nn.Module):
    use_fold: bool

    def __call__(self) -> Any:
        return _raw_fold(self, "p") if self.use_fold else self.make_rng("p")


@functools.cache
def linen_fold_works() -> bool:
    try:
        with (
            outside_linen(),
            jax.ensure_compile_time_eval(),
            jax.transfer_guard("allow"),
        ):
            rngs = {"p": jax.random.key(3)}
            folded = _FoldProbe(True).apply({}, rngs=rngs)
            made = _FoldProbe(False).apply({}, rngs=rngs)
            for f, m in zip(folded, made):
                key = f[0]
                if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                    key = jax.random.wrap_key_data(key)
                mine = jax.random.key_data(jax.random.fold_in(key, jnp.uint32(f[1])))
                if not bool(jnp.array_equal(mine, jax.random.key_data(m))):
                    return False
        return True
    except Exception:  # noqa: BLE001 - any change in the detail means "don't use it"
        return False
