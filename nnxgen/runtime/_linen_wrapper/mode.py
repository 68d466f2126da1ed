"""Train / eval mode: ``train=``, then :func:`mode`, then Kauldron's context.

``train=True`` runs the module as after ``.train()``, ``train=False`` as after
``.eval()``. With neither, mode attributes are left unset and a layer that
needs one raises :class:`ModeError` (never a silently chosen mode).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from typing import Any

import jax
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import ModeError, NnxgenError

__all__ = ["mode"]


#: The NNX attributes a mode sets (``.train()`` / ``.eval()``).
MODE_ATTRIBUTES = ("deterministic", "use_running_average")


_MODE: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "nnxgen_mode", default=None
)


@contextlib.contextmanager
def mode(train: bool) -> Iterator[None]:
    """Run wrappers called without ``train=`` in training (True) or eval (False) mode.

    For call sites that cannot pass the keyword, e.g. under ``nn.vmap``, which
    drops keyword arguments::

        with nnxgen.runtime.mode(train=True):
            y, updates = ensemble.apply(variables, x, rngs=rngs, mutable=["batch_stats"])

    An explicit ``train=`` still takes precedence; the mode is read when the
    wrapper's method runs (at trace time under ``jax.jit``).
    """
    token = _MODE.set(bool(train))
    try:
        yield
    finally:
        _MODE.reset(token)


def resolve_mode(train: bool | None) -> bool | None:
    if isinstance(train, jax.core.Tracer):
        raise NnxgenError(
            "train= was traced (it must be a Python bool, it selects the code path): "
            "bind it outside the transform, e.g. "
            "jax.eval_shape(functools.partial(model.init, train=False), key, x), "
            "jax.jit(f, static_argnames='train'), nn.jit(Model, static_argnames='train'), "
            "or pass it from a parent module outside nn.vmap / nn.remat."
        )
    if train is not None:
        return bool(train)
    scoped = _MODE.get()
    if scoped is not None:
        return scoped
    return _compat.kauldron_is_training()


def mode_error(cls_name: str, method: str, err: Exception) -> ModeError:
    # flax's own message, cut to what it says happened: its first line ends with
    # "Consider one of the following options:", a list of NNX-side fixes (constructor
    # arguments, nnx.view) that do not apply to a wrapper; the fix is ours, above.
    lines = str(err).strip().splitlines()
    sentences = re.split(r"(?<=[.!?])\s+", lines[0].strip()) if lines else []
    reason = " ".join(s for s in sentences if not s.endswith(":")).strip()
    return ModeError(
        f"{cls_name}.{method} runs mode-dependent layers (Dropout, BatchNorm, ...) but no "
        f"mode was given: pass train=True or train=False, e.g. "
        f"model.apply(variables, x, train=False), or where the keyword cannot reach it "
        f"(nn.vmap drops keyword arguments) wrap the call in "
        f"`with nnxgen.runtime.mode(train=...)`."
        + (f" (flax: {reason})" if reason else "")
    )


def is_missing_mode(err: Exception) -> bool:
    msg = str(err)
    return any(f"No `{a}`" in msg or f"No '{a}'" in msg for a in MODE_ATTRIBUTES)


def set_mode(module: Any, mode: bool | None, modules: list[Any] | None = None) -> None:
    """``module.set_attributes`` of the mode attributes (``.train()`` / ``.eval()``);
    ``modules``: the submodules of ``module`` (``nnx.iter_modules``) when a walk
    just listed them -- set directly, without walking the graph again."""
    if mode is None:
        values = dict.fromkeys(MODE_ATTRIBUTES)
    else:
        values = dict.fromkeys(MODE_ATTRIBUTES, not mode)
    if modules is None:
        module.set_attributes(**values, raise_if_not_found=False)
        return
    for m in modules:  # what set_attributes does for each module it walks
        for name, value in values.items():
            if hasattr(m, name):
                setattr(m, name, value)


def has_mode_attributes(module: Any) -> bool:
    return any(
        any(hasattr(m, a) for a in MODE_ATTRIBUTES) for _, m in nnx.iter_modules(module)
    )
