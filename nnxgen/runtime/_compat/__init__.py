"""Every use of a private flax / Kauldron detail, in one place (this package).

Each function says what it relies on and the versions it was checked on
(flax 0.12.8 with jax 0.10.2, flax 0.12.12 with jax 0.12.0.1, kauldron 1.4.2 /
1.4.4). Each has a cheap check in :data:`CHECKS` (run by the test suite on
every stack: it fails loudly when a release changes the detail) and a slower
fallback that stays correct when the detail is gone. One module per concern
(:mod:`.rng_fold`, :mod:`.linen_context`, :mod:`.variables`, :mod:`.streams`,
:mod:`.sharding`), each with its details' checks; the rest of the runtime
uses them through this package's names only:

- ``linen_fold``: ``Scope.rngs[t].rng`` / ``.suffix``, ``Scope.rng_counters``,
  ``Scope._check_valid`` / ``_validate_trace_level`` and the hash of
  ``flax.core.scope._fold_in_static``. Fallback: start the stream at
  ``make_rng(t)`` itself (one more hash in the program; the draws are then
  other keys than ``make_rng``'s, still a function of the caller's key).
- ``outside_linen``: ``flax.linen.module._context.module_stack`` (which
  ``flax.nnx.bridge`` reads too). Fallback: no-op (plain NNX needs nothing;
  ``ToNNX`` inside a constructor then fails as it does in Linen).
- ``interceptors_active``: ``flax.linen.module._global_interceptor_stack``.
  Fallback: "active", so ``init`` runs the forward pass.
- ``kauldron_is_training``: ``kauldron.utils.train_property._context
  .is_training_stack``. Fallback: the getter of the public
  ``kd.nn.train_property()`` descriptor.
- ``collection_name`` / ``variable_type`` / ``is_registered_collection``:
  ``variable_name_from_type`` / ``variable_type_from_name`` of
  ``flax.nnx.variablelib`` (public functions of a module ``flax.nnx`` does not
  re-export; the layout ``flax.nnx.bridge`` uses).
- ``registered_collections``: ``flax.nnx.variablelib.VariableTypeCache`` (the
  names ``sow`` may target). Fallback: the collections of flax's own types.
- ``linen_vars_to_nnx`` / ``nnx_to_linen_vars``: the converters of
  ``flax.nnx.bridge.variables`` (``linen_vars_to_nnx_attrs`` /
  ``nnx_attrs_to_linen_vars``) that ``ToNNX`` uses, so that NNX wrappers of
  Linen modules keep ``ToNNX``'s layout and sharding metadata. No fallback:
  a flax without them has no ``ToNNX`` layout to match.
- ``is_initializing``: ``Pytree._pytree__state.initializing``, what
  ``nnx.bridge.lazy_init`` sets (and ``ToNNX`` reads). Fallback: False.
- ``draw_streams``: ``nnx.RngStream.__call__`` is ``fold_in(key, count)``
  then ``count += 1``; eager draws from several streams are done in one
  jitted dispatch. Fallback (a trace, a stacked stream, or a flax whose draw
  differs): each stream's own ``stream()``.
- ``is_linen_bridge``: ``ToNNX`` keeps its Linen module in the attribute
  ``to_nnx__module`` and its variables in ``linen_vars_to_nnx``'s layout
  (nnxgen's NNX wrappers of Linen modules do the same). No fallback.
- ``layout_variables``: ``nnx.Variable.__init__`` stores the value of
  ``nnx.using_eager_sharding()`` verbatim as its ``eager_sharding`` metadata
  and shards only when it is truthy; ``set_metadata("eager_sharding", v)``
  (the two-argument form) replaces it. Fallback: eager sharding off for the
  trace, and the layout's variables say ``eager_sharding=False``.
- ``variable_writes`` (used by ``_immutable``): every write a module makes to
  an ``nnx.Variable`` (``v[...] = x``, ``v.value = x``, ``v.set_value(x)``)
  goes through ``Variable.set_value``, while ``nnx.merge``, the pytree
  unflatten and the write-back of NNX transforms (``update_from_state``) do
  not; a subclass with ``__slots__ = ()`` may replace a variable's
  ``__class__`` and is kept by ``nnx.split`` / ``nnx.merge``. No fallback: a
  write by another path would not raise (it is still dropped, as before).
"""

from __future__ import annotations

from collections.abc import Callable

from nnxgen.runtime._compat.linen_context import (
    check_interceptor_stack,
    check_kauldron,
    check_module_stack,
    interceptors_active,
    kauldron_is_training,
    outside_linen,
)
from nnxgen.runtime._compat.rng_fold import linen_fold, linen_fold_works
from nnxgen.runtime._compat.sharding import check_eager_default, layout_variables
from nnxgen.runtime._compat.streams import draw_streams, stream_draw_matches
from nnxgen.runtime._compat.variables import (
    TONNX_MODULE,
    check_bridge_converters,
    check_lazy_init_flag,
    check_registry,
    check_tonnx_layout,
    check_variable_writes,
    collection_name,
    is_initializing,
    is_linen_bridge,
    is_registered_collection,
    linen_vars_to_nnx,
    nnx_to_linen_vars,
    registered_collections,
    variable_type,
)

__all__ = [
    "CHECKS",
    "TONNX_MODULE",
    "collection_name",
    "draw_streams",
    "interceptors_active",
    "is_initializing",
    "is_linen_bridge",
    "is_registered_collection",
    "kauldron_is_training",
    "layout_variables",
    "linen_fold",
    "linen_vars_to_nnx",
    "nnx_to_linen_vars",
    "outside_linen",
    "registered_collections",
    "variable_type",
]

#: name -> cheap check that the detail still behaves as relied on.
CHECKS: dict[str, Callable[[], bool]] = {
    "linen_fold": lambda: linen_fold_works.__wrapped__(),
    "module_stack": check_module_stack,
    "interceptor_stack": check_interceptor_stack,
    "kauldron_training_stack": check_kauldron,
    "variable_registry": check_registry,
    "bridge_converters": check_bridge_converters,
    "lazy_init_flag": check_lazy_init_flag,
    "tonnx_layout": check_tonnx_layout,
    "rng_stream_draw": lambda: stream_draw_matches.__wrapped__(),
    "eager_sharding_default": check_eager_default,
    "variable_writes": check_variable_writes,
}
