"""Every use of a private flax / Kauldron detail, in one place.

Each function below says what it relies on and the versions it was checked on
(flax 0.12.8 with jax 0.10.2, flax 0.12.12 with jax 0.12.0.1, kauldron 1.4.2 /
1.4.4). Each has a cheap check in :data:`CHECKS` (run by the test suite on
every stack: it fails loudly when a release changes the detail) and a slower
fallback that stays correct when the detail is gone:

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

import contextlib
import functools
import hashlib
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
from flax import config as flax_config
from flax import linen as nn
from flax.nnx import variablelib

# ---------------------------------------------------------------------------
# Linen's make_rng as (base key, fold data).


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
    if not _linen_fold_works():
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
def _linen_fold_works() -> bool:
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


# ---------------------------------------------------------------------------
# Linen's module stack.


@contextlib.contextmanager
def outside_linen() -> Iterator[None]:
    """Linen modules created in here (``nnx.bridge.ToNNX(nn.Dense(d))`` inside an
    NNX constructor) are top-level, unbound modules, as in pure NNX.

    Linen gives a new module the innermost bound module as its parent
    (``flax.linen.module._context.module_stack[-1]``; ``flax.nnx.bridge`` reads
    the same stack), and a bound module may only create children in
    ``setup``/``@compact``. ``None`` on that stack is what Linen itself has
    outside any module.
    """
    stack = getattr(getattr(nn.module, "_context", None), "module_stack", None)
    if not isinstance(stack, list):
        yield
        return
    stack.append(None)
    try:
        yield
    finally:
        stack.pop()


def interceptors_active() -> bool:
    """Whether a ``nn.intercept_methods`` interceptor may see method outputs."""
    stack = getattr(nn.module, "_global_interceptor_stack", None)
    if stack is None:
        return True
    try:
        return bool(len(list(stack)))
    except TypeError:
        return True


# ---------------------------------------------------------------------------
# Kauldron's training context.


def kauldron_is_training() -> bool | None:
    """Kauldron's ``is_training_property`` when its context is active, else None.

    Kauldron is not imported here: its train-property module is only consulted
    when the user's program already imported it (which is what patches
    ``Module.apply`` to accept ``is_training_property=``). Fast path: the
    private ``_context.is_training_stack``; fallback: the public
    ``train_property()``, which raises when no value is set.
    """
    tp = sys.modules.get("kauldron.utils.train_property")
    if tp is None:
        return None
    context = getattr(tp, "_context", None)
    stack = getattr(context, "is_training_stack", None)
    if stack is not None:
        return bool(stack[-1]) if len(stack) else None
    try:  # public: the getter of the ``kd.nn.train_property()`` descriptor
        return bool(tp.train_property().fget(types.SimpleNamespace(scope=True)))
    except Exception:  # noqa: BLE001 - raises when no value is set
        return None


# ---------------------------------------------------------------------------
# flax's variable-type <-> collection-name registry.


def collection_name(var_type: type) -> str:
    """The Linen collection of an NNX variable type (registering a new type)."""
    return variablelib.variable_name_from_type(var_type, allow_register=True)


def is_registered_collection(name: str) -> bool:
    try:
        variable_type(name)
    except LookupError:
        return False
    return True


def registered_collections() -> tuple[str, ...]:
    """Every collection name in flax's variable-type registry."""
    cache = getattr(variablelib, "VariableTypeCache", None)
    if isinstance(cache, dict):
        return tuple(cache)
    return tuple(n for n in _FLAX_COLLECTIONS if is_registered_collection(n))


_FLAX_COLLECTIONS = ("batch_stats", "cache", "intermediates", "perturbations")


def variable_type(name: str) -> type:
    """The NNX variable type registered for collection ``name`` (LookupError if none)."""
    try:
        return variablelib.variable_type_from_name(name, allow_register=False)
    except ValueError:
        raise LookupError(name) from None


# ---------------------------------------------------------------------------
# flax.nnx.bridge's Linen <-> NNX variable converters, and lazy_init's flag.


def linen_vars_to_nnx(variables: Any) -> dict[str, Any]:
    """Linen ``{collection: tree}`` -> ``{attribute: Variable | dict}`` (ToNNX's layout)."""
    from flax.nnx.bridge import variables as bridge_variables

    return bridge_variables.linen_vars_to_nnx_attrs(variables)


def nnx_to_linen_vars(attrs: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`linen_vars_to_nnx` (sharding metadata re-boxed)."""
    from flax.nnx.bridge import variables as bridge_variables

    return bridge_variables.nnx_attrs_to_linen_vars(attrs)


def is_initializing(module: Any) -> bool:
    """Whether ``nnx.bridge.lazy_init`` is running ``module``."""
    state = getattr(module, "_pytree__state", None)
    return bool(getattr(state, "initializing", False))


# ---------------------------------------------------------------------------
# RngStream draws, several at once.


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
        or not _stream_draw_matches()
        or any(isinstance(x, jax.core.Tracer) or x.shape for x in keys + counts)
    ):
        return [s() for s in streams]
    new_keys, new_counts = _fold_all(keys, counts)
    for s, c in zip(streams, new_counts):
        s.count.set_value(c)
    drawn: list[jax.Array] = new_keys
    return drawn


@functools.cache
def _stream_draw_matches() -> bool:
    from flax import nnx

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


# ---------------------------------------------------------------------------
# ToNNX's layout.


#: The attribute ``nnx.bridge.ToNNX`` (and nnxgen's NNX wrappers) hold the Linen module in.
TONNX_MODULE = "to_nnx__module"


def is_linen_bridge(node: Any) -> bool:
    """``node`` runs a Linen module in ToNNX's layout (``ToNNX`` or a generated
    NNX wrapper of a Linen module)."""
    from flax import nnx

    return isinstance(node, nnx.Module) and TONNX_MODULE in vars(node)


# ---------------------------------------------------------------------------
# Eager sharding while a layout is traced.


class _EagerDefault:
    """The ``eager_sharding`` default while a layout is traced: falsy (no variable
    is sharded, so no mesh is needed), and told apart from an explicit False."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<nnxgen: eager_sharding default>"


_EAGER_DEFAULT = _EagerDefault()


@contextlib.contextmanager
def layout_variables() -> Iterator[Callable[[Any], None]]:
    """Variables created in here are not sharded eagerly, so that an abstract
    build of a module with ``out_sharding`` annotations needs no mesh (the
    layout keeps the annotations as metadata; only the values would be
    sharded, and a traced layout discards them).

    Yields ``restore(module)``: gives every variable of ``module`` that took
    the default the ``eager_sharding`` metadata it would have had outside
    (``nnx.using_eager_sharding()`` on entry), so the graph definitions equal
    those of a module built under a mesh. Variables made with an explicit
    ``eager_sharding=`` keep it (and one made with ``eager_sharding=True``
    still needs a mesh, as in NNX).
    """
    from flax import nnx

    default = nnx.using_eager_sharding()
    if not default:  # nothing is sharded eagerly anyway
        yield _keep
        return
    if not _eager_default_kept():
        with nnx.use_eager_sharding(False):  # type: ignore[no-untyped-call]
            yield _keep
        return
    with nnx.use_eager_sharding(_EAGER_DEFAULT):  # type: ignore[no-untyped-call]
        yield functools.partial(_restore_eager_sharding, default=default)


def _keep(module: Any) -> None:
    pass


def _restore_eager_sharding(module: Any, default: Any) -> None:
    from flax import nnx

    for _, node in nnx.iter_graph(module):
        if (
            isinstance(node, nnx.Variable)
            and node.get_metadata().get("eager_sharding") is _EAGER_DEFAULT
        ):
            node.set_metadata("eager_sharding", default)


@functools.cache
def _eager_default_kept() -> bool:
    try:
        with jax.ensure_compile_time_eval():  # also when first asked in a trace
            return _check_eager_default()
    except Exception:  # noqa: BLE001 - any change in the detail means "don't use it"
        return False


def _check_eager_default() -> bool:
    from flax import nnx

    def make() -> Any:
        return nnx.Param(jnp.zeros((2, 4)), out_sharding=(None, "nnxgen-no-such-axis"))

    with nnx.use_eager_sharding(_EAGER_DEFAULT):  # type: ignore[no-untyped-call]
        var = make()  # no mesh has that axis: raises if it were sharded
        marked = var.get_metadata().get("eager_sharding") is _EAGER_DEFAULT
        _restore_eager_sharding(var, True)
    with nnx.use_eager_sharding(False):  # type: ignore[no-untyped-call]
        reference = make()
    reference.set_metadata("eager_sharding", True)
    return (
        marked
        and var.get_metadata() == reference.get_metadata()
        and nnx.graphdef(var) == nnx.graphdef(reference)
    )


# ---------------------------------------------------------------------------
# Checks (tests/test_compat.py runs them on every stack).


def _check_tonnx_layout() -> bool:
    from flax import nnx

    bridge = nnx.bridge.ToNNX(nn.Dense(2), rngs=nnx.Rngs(0))
    lazy_init: Any = nnx.bridge.lazy_init  # untyped in some flax releases
    lazy_init(bridge, jnp.ones((1, 3)))
    return is_linen_bridge(bridge) and type(vars(bridge).get("kernel")) is nnx.Param


def _check_module_stack() -> bool:
    stack = getattr(getattr(nn.module, "_context", None), "module_stack", None)
    if not isinstance(stack, list):
        return False
    with outside_linen():
        return nn.Dense(2).parent is None


def _check_interceptor_stack() -> bool:
    if getattr(nn.module, "_global_interceptor_stack", None) is None:
        return False
    before = interceptors_active()
    with nn.intercept_methods(lambda f, a, k, c: f(*a, **k)):
        during = interceptors_active()
    return during and not before


def _check_kauldron() -> bool:
    import kauldron.utils.train_property as tp  # type: ignore[import-untyped]

    stack = tp._context.is_training_stack
    with tp.set_train_property(True):
        inside = len(stack) == 1 and stack[-1] is True
    return inside and not len(stack)


def _check_registry() -> bool:
    from flax import nnx

    return (
        collection_name(nnx.Param) == "params"
        and variable_type("cache") is nnx.Cache
        and not is_registered_collection("nnxgen-not-a-collection")
    )


def _check_bridge_converters() -> bool:
    from flax import nnx

    linen = {
        "params": {"Dense_0": {"kernel": jnp.ones(2)}},
        "batch_stats": {"m": jnp.zeros(1)},
    }
    attrs = linen_vars_to_nnx(linen)
    back = nnx_to_linen_vars(attrs)
    return (
        type(attrs["Dense_0"]["kernel"]) is nnx.Param
        and type(attrs["m"]) is nnx.BatchStat
        and str(jax.tree.structure(back)) == str(jax.tree.structure(linen))
    )


def _check_lazy_init_flag() -> bool:
    from flax import nnx

    seen: list[bool] = []

    class Probe(nnx.Module):
        def __call__(self) -> None:
            seen.append(is_initializing(self))

    probe = Probe()
    probe()
    nnx.bridge.lazy_init(probe)
    return seen == [False, True] and not is_initializing(probe)


def _check_variable_writes() -> bool:
    from flax import nnx

    seen: list[str] = []

    class Probe(nnx.BatchStat):  # type: ignore[type-arg]
        __slots__ = ()

        def set_value(self, value: Any, **kwargs: Any) -> None:
            seen.append("write")
            super().set_value(value, **kwargs)

    class M(nnx.Module):
        def __init__(self) -> None:
            self.v = nnx.BatchStat(jnp.zeros(2))

    m = M()
    m.v.__class__ = Probe
    graphdef, state = nnx.split(m)
    m2 = nnx.merge(graphdef, state)
    kept = type(m2.v) is Probe
    m2.v.update_from_state(nnx.BatchStat(jnp.ones(2)))
    quiet = not seen
    m2.v[...] = jnp.ones(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # `.value` (0.12.12)
        m2.v.value = jnp.ones(2)
    m2.v.set_value(jnp.ones(2))
    return kept and quiet and seen == ["write"] * 3


#: name -> cheap check that the detail still behaves as relied on.
CHECKS: dict[str, Callable[[], bool]] = {
    "linen_fold": lambda: _linen_fold_works.__wrapped__(),
    "module_stack": _check_module_stack,
    "interceptor_stack": _check_interceptor_stack,
    "kauldron_training_stack": _check_kauldron,
    "variable_registry": _check_registry,
    "bridge_converters": _check_bridge_converters,
    "lazy_init_flag": _check_lazy_init_flag,
    "tonnx_layout": _check_tonnx_layout,
    "rng_stream_draw": lambda: _stream_draw_matches.__wrapped__(),
    "eager_sharding_default": _check_eager_default,
    "variable_writes": _check_variable_writes,
}
