"""NNX wrappers of Linen modules: what generated ``nnx.Module`` classes call.

A generated class's ``__init__`` builds the Linen module from its typed
arguments and hands it to :func:`linen_init`; every mirrored method forwards
to :func:`linen_call`, which

* on the first call (or under ``nnx.bridge.lazy_init``) runs the Linen
  module's ``init_with_output`` with keys drawn from the wrapper's
  ``nnx.Rngs`` and stores the variables it made;
* afterwards runs ``apply`` on the stored variables (``intermediates`` and
  other sown collections start empty each call, as in a Linen ``apply`` that
  is not handed them back), every collection but ``params`` mutable, and writes what
  changed back in place (batch statistics in training, decode caches, sown
  values); under ``lazy_init`` ``params`` is mutable too, so a second method
  adds the variables it needs and keeps the trained ones.

Layout: exactly ``flax.nnx.bridge.ToNNX`` + ``lazy_init`` (the same
converters, :func:`_compat.linen_vars_to_nnx`): a Linen variable becomes an NNX
variable of the type flax's registry names for its collection (``params`` ->
``nnx.Param``, ``batch_stats`` -> ``nnx.BatchStat``, ...), stored under the
attribute named by its first path element (nested dicts below), collections
merged; sharding boxes (``nn.Partitioned``, ``nn.LogicallyPartitioned``)
become the variable's sharding metadata. The Linen module lives at
``to_nnx__module``, the (forked) ``nnx.Rngs`` at ``to_nnx__rngs``; keys are
drawn from every stream on every call, as ``ToNNX`` does, so the same seed
gives the same numbers as ``ToNNX``.

Mode: a Linen argument named ``deterministic``, ``train``, ``training`` or
``use_running_average`` that the caller leaves ``None`` follows the wrapper's
mode: ``.train()`` / ``.eval()`` (``set_attributes``) and ``nnx.view`` set the
``deterministic`` / ``use_running_average`` attributes it reads (``train`` and
``training`` are ``not deterministic``). An explicit argument wins; a Linen
field of the same name that the constructor set wins too (Linen would reject
both). With no mode and no argument the Linen default applies, and where
there is none a :class:`ModeError` says what to do. ``nnx.bridge.lazy_init``
needs no mode: with none set it runs the Linen method in eval mode
(``deterministic=True``, ``train=False``, ...), which makes the same variables.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import jax
from flax import errors as flax_errors
from flax import linen as nn
from flax import nnx
from flax.core.scope import DenyList

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import ModeError, NnxgenError
from nnxgen.runtime._rngs import FallbackParamsStream, missing_stream_error
from nnxgen.runtime._stale import check_fresh

__all__ = ["linen_call", "linen_default", "linen_init", "linen_set_view"]

_R = TypeVar("_R")

#: Linen argument names that follow the NNX mode, and whether they mean
#: "training" (True) or "not training" (False).
MODE_ARGUMENTS: dict[str, bool] = {
    "deterministic": False,
    "use_running_average": False,
    "train": True,
    "training": True,
}

#: The wrapper's mode attributes (what ``.train()`` / ``.eval()`` set).
MODE_ATTRIBUTES = ("deterministic", "use_running_average")

_MODULE = _compat.TONNX_MODULE
_RNGS = "to_nnx__rngs"
_INTERMEDIATES = "intermediates"
#: Every collection but ``params`` may change during a call and is written back.
_APPLY_MUTABLE = DenyList(("params",))


def linen_init(
    self: nnx.Module, module: nn.Module, rngs: nnx.Rngs, *, modes: bool = False
) -> None:
    """Set up ``self`` (a generated NNX wrapper) to run the Linen ``module``.

    ``rngs`` is forked, as ``ToNNX`` does (an int seed is taken as
    ``nnx.Rngs(seed)``, a key as ``ToNNX`` takes one: the ``params`` stream);
    ``modes`` adds the
    ``deterministic`` / ``use_running_average`` attributes that
    ``.train()`` / ``.eval()`` / ``nnx.view`` set.
    """
    cls = type(self).__name__
    if not isinstance(module, nn.Module):
        raise NnxgenError(
            f"{cls}: expected a flax.linen.Module to wrap, got {type(module).__name__}"
        )
    check_fresh(type(self), type(module))  # a stale generated file: say so
    if isinstance(rngs, nnx.Rngs):
        forked = rngs.fork()
    elif isinstance(rngs, int) and not isinstance(rngs, bool):
        forked = nnx.Rngs(rngs).fork()  # as rngs=nnx.Rngs(seed)
    elif isinstance(rngs, jax.Array) and (
        jax.dtypes.issubdtype(rngs.dtype, jax.dtypes.prng_key) or rngs.shape == (2,)
    ):
        forked = nnx.Rngs(params=rngs)  # as ToNNX(module, rngs=key)
    else:
        raise NnxgenError(
            f"{cls}(rngs=...) takes an nnx.Rngs (e.g. rngs=nnx.Rngs(0)), "
            f"not {type(rngs).__name__}"
        )
    setattr(self, _MODULE, module)
    setattr(self, _RNGS, forked)
    if modes:
        for attr in MODE_ATTRIBUTES:
            setattr(self, attr, None)


def linen_set_view(
    self: nnx.Module,
    deterministic: bool | None = None,
    use_running_average: bool | None = None,
) -> None:
    """``set_view`` for ``nnx.view(model, deterministic=..., use_running_average=...)``."""
    if deterministic is not None:
        self.deterministic = deterministic  # type: ignore[attr-defined]
    if use_running_average is not None:
        self.use_running_average = use_running_average  # type: ignore[attr-defined]


def linen_default(linen_cls: type, field: str) -> Any:
    """The default of the Linen dataclass field ``field`` (for defaults whose
    source text the generated file cannot import)."""
    import dataclasses

    for f in dataclasses.fields(linen_cls):
        if f.name == field:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise NnxgenError(
        f"{linen_cls.__qualname__} has no field {field!r} with a default; regenerate the wrapper"
    )


def linen_call(
    self: nnx.Module,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    modes: tuple[str, ...] = (),
) -> _R:  # type: ignore[type-var]
    """Run ``method`` of the wrapped Linen module on the wrapper's variables.

    ``kwargs`` holds the arguments passed by keyword; the names in ``modes``
    (mode arguments, see the module docstring) are filled from the mode when
    ``None``; where neither the caller, a Linen field nor the mode sets one and the
    Linen default is ``None``, Linen decides (``dropout_rate=0`` attention needs
    no mode) and its "must be passed" error becomes a :class:`ModeError`. Typed
    ``-> _R`` like :func:`nnxgen.runtime.call`: a type checker
    takes the generated method's own return annotation.
    """
    module: nn.Module = getattr(self, _MODULE)
    check_fresh(type(self), type(module))  # one dict lookup after the first call
    unset: tuple[str, ...] = ()
    if modes:
        kwargs, unset = _fill_modes(self, module, method, kwargs, modes)
    try:
        result: _R = _run(self, module, method, args, kwargs)
    except ValueError as err:  # Linen's merge_param: 'Parameter "x" must be passed ...'
        arg = next((a for a in unset if f'"{a}" must be passed' in str(err)), None)
        if arg is None:
            raise
        raise _mode_error(self, method, arg) from err
    return result


def _run(
    self: nnx.Module,
    module: nn.Module,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    linen_method: Any = None if method == "__call__" else method
    if method in vars(module):  # a field shadows the method: hand Linen the function
        linen_method = getattr(type(module), method)
    attrs = _state_attributes(self)
    applying = bool(attrs) and not _compat.is_initializing(self)
    rngs, held_back = _draw(getattr(self, _RNGS), hold_back=applying)
    if not attrs:
        out, variables = module.init_with_output(
            rngs, *args, method=linen_method, **kwargs
        )
        _store(self, variables)
        return out
    try:
        return _apply(self, module, linen_method, args, kwargs, attrs, rngs)
    except flax_errors.InvalidRngError as err:
        found = re.search(r'needs PRNG for "([^"]+)"', str(err)) if held_back else None
        if found is None:  # not the held-back stream's doing: Linen's own error says it
            raise
        raise missing_stream_error(found[1]) from err


def _apply(
    self: nnx.Module,
    module: nn.Module,
    linen_method: str | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attrs: dict[str, Any],
    rngs: dict[str, jax.Array],
) -> Any:
    variables = _compat.nnx_to_linen_vars(attrs)
    for name in [k for k, v in variables.items() if k == _INTERMEDIATES or _sown(v)]:
        del variables[name]  # sown values start empty on every call, as in Linen
    mutable = True if _compat.is_initializing(self) else _APPLY_MUTABLE
    out, updates = module.apply(
        variables, *args, rngs=rngs, method=linen_method, mutable=mutable, **kwargs
    )
    _store(self, _changed(variables, updates))
    return out


def _sown(tree: Any) -> bool:
    """A collection ``sow`` made: every variable holds a tuple (``sow``'s default
    reduction appends to one), e.g. ``self.sow("losses", "aux", x)``."""
    if isinstance(tree, tuple):
        return True
    return (
        isinstance(tree, Mapping)
        and bool(tree)
        and all(_sown(v) for v in tree.values())
    )


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The collections of ``after`` that the call changed: Linen hands the mutable
    collections it did not touch back as they came in (the same leaves), and
    converting and writing those back would be work for nothing (eval)."""
    out = {}
    for name, value in after.items():
        old = before.get(name)
        if old is not None:
            leaves, tree = jax.tree.flatten(value)
            old_leaves, old_tree = jax.tree.flatten(old)
            same = bool(operator.eq(tree, old_tree))
            if same and all(map(operator.is_, leaves, old_leaves)):
                continue
        out[name] = value
    return out


# ---------------------------------------------------------------------------
# Mode.


def _mode_value(self: nnx.Module, arg: str) -> bool | None:
    det = getattr(self, "deterministic", None)
    ura = getattr(self, "use_running_average", None)
    first, second = (ura, det) if arg == "use_running_average" else (det, ura)
    value = first if first is not None else second
    if value is None:
        return None
    return (not value) if MODE_ARGUMENTS[arg] else bool(value)


def _class_of(module: nn.Module) -> Any:
    return type(module)


_REQUIRED = object()


@functools.cache
def _linen_default_of(linen_cls: type, method: str, arg: str) -> Any:
    """The Linen method's default for ``arg``; ``_REQUIRED`` where it has none."""
    try:
        param = inspect.signature(getattr(linen_cls, method)).parameters.get(arg)
    except (TypeError, ValueError):
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return _REQUIRED
    return param.default


def _mode_error(self: nnx.Module, method: str, arg: str) -> ModeError:
    view = arg if arg == "use_running_average" else "deterministic"
    return ModeError(
        f"{type(self).__name__}.{method}: the Linen argument {arg!r} follows the NNX "
        "mode, but none is set: call model.train() or model.eval() first (or use "
        f"nnx.view(model, {view}=...)), or pass {arg}=... explicitly"
    )


def _fill_modes(
    self: nnx.Module,
    module: nn.Module,
    method: str,
    kwargs: dict[str, Any],
    modes: tuple[str, ...],
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``kwargs`` with the mode arguments filled, and those left to a Linen
    default of ``None`` (Linen decides from its field, or raises)."""
    kwargs = dict(kwargs)
    unset: tuple[str, ...] = ()
    for arg in modes:
        if kwargs.get(arg) is not None:
            continue  # passed explicitly
        kwargs.pop(arg, None)
        if getattr(module, arg, None) is not None:
            continue  # a Linen field of that name, set at construction, decides
        value = _mode_value(self, arg)
        if value is None and _compat.is_initializing(self):
            # lazy_init with no mode set: make the variables in eval mode (the
            # mode does not change which variables Linen's init makes)
            value = not MODE_ARGUMENTS[arg]
        if value is not None:
            kwargs[arg] = value
            continue
        default = _linen_default_of(_class_of(module), method, arg)
        if default is _REQUIRED:
            raise _mode_error(self, method, arg)
        if default is None:
            unset += (arg,)
    return kwargs, unset


# ---------------------------------------------------------------------------
# Rngs and state.


def _draw(rngs: nnx.Rngs, *, hold_back: bool) -> tuple[dict[str, jax.Array], bool]:
    """One key from every stream, ``default`` serving as ``params`` (as ToNNX),
    and whether a :class:`FallbackParamsStream` was held back (``hold_back``:
    the variables exist, nothing is initialised, so Linen needs no ``params``
    key but would serve a missing stream from it)."""
    items: Callable[[], Iterable[tuple[str, Any]]] = rngs.items
    names, streams = [], []
    held_back = False
    for name, stream in items():
        if hold_back and isinstance(stream, FallbackParamsStream):
            held_back = True
            continue
        names.append(name)
        streams.append(stream)
    keys = dict(zip(names, _compat.draw_streams(streams)))
    if "params" not in keys and "default" in keys:
        keys["params"] = keys.pop("default")
    return keys, held_back


def _is_state(value: Any) -> bool:
    if isinstance(value, nnx.Variable):
        return True
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(_is_state(v) for v in value.values())
    )


def _state_attributes(self: nnx.Module) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(self).items()
        if not k.startswith(("to_nnx__", "_pytree__")) and _is_state(v)
    }


def _merge(current: Any, new: Any) -> Any:
    """``new`` written into ``current``: existing variables of the same type are
    updated in place (references held elsewhere see it); the rest is added."""
    if (
        isinstance(current, nnx.Variable)
        and isinstance(new, nnx.Variable)
        and type(current) is type(new)
    ):
        current.set_value(new.get_value())
        return current
    if isinstance(current, Mapping) and isinstance(new, Mapping):
        out = dict(current)
        changed = False
        for key, value in new.items():
            merged = _merge(current.get(key), value)
            if merged is not current.get(key):
                out[key] = merged
                changed = True
        return out if changed else current
    return new


_MEMBERS: dict[type, frozenset[str]] = {}


def _members(cls: type) -> frozenset[str]:
    found = _MEMBERS.get(cls)
    if found is None:
        found = _MEMBERS[cls] = frozenset(dir(cls))
    return found


def _store(self: nnx.Module, variables: Mapping[str, Any]) -> None:
    if not variables:
        return
    own = vars(self)
    members = _members(type(self))
    converted = _compat.linen_vars_to_nnx(variables)
    for name in converted:  # every name checked before anything is stored
        if (
            name in members
            or name.startswith(("to_nnx__", "_pytree__"))
            or (name in own and not _is_state(own[name]))
        ):
            raise NnxgenError(
                f"{type(self).__name__}: the Linen module has a variable or submodule "
                f"named {name!r}, which is also a member of the NNX wrapper; rename it "
                "in the Linen module"
            )
    for name, value in converted.items():
        current = own.get(name)
        merged = _merge(current, value)
        if merged is not current:
            setattr(
                self, name, nnx.data(merged) if isinstance(merged, Mapping) else merged
            )
