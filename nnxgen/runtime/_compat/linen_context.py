"""Private flax / Kauldron details: Linen's module and interceptor stacks, Kauldron's mode.

- ``outside_linen``: ``flax.linen.module._context.module_stack`` (which
  ``flax.nnx.bridge`` reads too). Fallback: no-op (plain NNX needs nothing;
  ``ToNNX`` inside a constructor then fails as it does in Linen).
- ``interceptors_active``: ``flax.linen.module._global_interceptor_stack``.
  Fallback: "active", so ``init`` runs the forward pass.
- ``kauldron_is_training``: ``kauldron.utils.train_property._context
  .is_training_stack``. Fallback: the getter of the public
  ``kd.nn.train_property()`` descriptor.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator

from flax import linen as nn

__all__ = [
    "check_interceptor_stack",
    "check_kauldron",
    "check_module_stack",
    "interceptors_active",
    "kauldron_is_training",
    "outside_linen",
]


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
# Checks.


def check_module_stack() -> bool:
    stack = getattr(getattr(nn.module, "_context", None), "module_stack", None)
    if not isinstance(stack, list):
        return False
    with outside_linen():
        return nn.Dense(2).parent is None


def check_interceptor_stack() -> bool:
    if getattr(nn.module, "_global_interceptor_stack", None) is None:
        return False
    before = interceptors_active()
    with nn.intercept_methods(lambda f, a, k, c: f(*a, **k)):
        during = interceptors_active()
    return during and not before


def check_kauldron() -> bool:
    # optional dependency: imported only by its check
    import kauldron.utils.train_property as tp  # type: ignore[import-untyped]

    stack = tp._context.is_training_stack
    with tp.set_train_property(True):
        inside = len(stack) == 1 and stack[-1] is True
    return inside and not len(stack)
