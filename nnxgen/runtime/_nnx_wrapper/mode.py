"""NNX wrappers of Linen modules: Linen mode arguments that follow the NNX mode.

A Linen argument named ``deterministic``, ``train``, ``training`` or
``use_running_average`` that the caller leaves ``None`` follows the wrapper's
mode: ``.train()`` / ``.eval()`` (``set_attributes``) and ``nnx.view`` set the
``deterministic`` / ``use_running_average`` attributes it reads (``train`` and
``training`` are ``not deterministic``). An explicit argument wins; a Linen
field of the same name that the constructor set wins too (Linen would reject
both). With no mode and no argument the Linen default applies, and where
there is none a :class:`ModeError` says what to do (:func:`fill_modes`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import ModeError

__all__ = ["MODE_ARGUMENTS", "MODE_ATTRIBUTES", "fill_modes", "mode_error"]

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


def mode_error(self: nnx.Module, method: str, arg: str) -> ModeError:
    view = arg if arg == "use_running_average" else "deterministic"
    return ModeError(
        f"{type(self).__name__}.{method}: the Linen argument {arg!r} follows the NNX "
        "mode, but none is set: call model.train() or model.eval() first (or use "
        f"nnx.view(model, {view}=...)), or pass {arg}=... explicitly"
    )


def fill_modes(
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
            raise mode_error(self, method, arg)
        if default is None:
            unset += (arg,)
    return kwargs, unset
