"""The ``init`` each generated Linen wrapper class gets: it marks its output discarded.

How the runtime knows that ``Module.init`` throws the method's output away,
with nothing but documented behaviour: every generated class gets an ``init``
(installed by ``WrapperSpec.__set_name__`` when the class body runs, marked
``nn.nowrap``) that calls ``Module.init`` inside a context naming the class and
the method it runs (:func:`discarding`). The init shortcut (:mod:`.init`)
skips the forward pass only when that context names the wrapper's own
generated method.
"""

from __future__ import annotations

import contextvars
from typing import Any, cast

from flax import linen as nn

__all__ = ["discarding", "install_init"]

#: (generated class, method name) of the ``init`` running now, if any.
_DISCARDING: contextvars.ContextVar[tuple[type, str] | None] = contextvars.ContextVar(
    "nnxgen_init_discards", default=None
)


def discarding() -> tuple[type, str] | None:
    """(wrapper class, generated method) whose ``init`` is running now, if any."""
    return _DISCARDING.get()


def install_init(owner: type) -> None:
    """Give the generated class ``owner`` an ``init`` that marks its output discarded."""
    if "init" in vars(owner):
        return

    @nn.nowrap
    def init(
        self: nn.Module, rngs: Any, *args: Any, method: Any = None, **kwargs: Any
    ) -> Any:
        name = _own_method(owner, type(self), method)
        token = _DISCARDING.set((type(self), name) if name else None)
        try:  # looked up per call: Kauldron patches Module.init when imported
            return super(cast(Any, owner), self).init(
                rngs, *args, method=method, **kwargs
            )
        finally:
            _DISCARDING.reset(token)

    init.__doc__ = nn.Module.init.__doc__
    init.__nnxgen_init__ = True  # type: ignore[attr-defined]
    init.__qualname__ = f"{owner.__qualname__}.init"
    owner.init = init  # type: ignore[attr-defined]


def _own_method(owner: type, cls: type, method: Any) -> str | None:
    """The name of the generated method ``init`` will run, or None for anything else."""
    if method is None:
        name = "__call__"
    elif isinstance(method, str):
        name = method
    else:
        name = getattr(method, "__name__", "")
        if getattr(cls, name, None) is not method:
            return None
    fn = vars(owner).get(name)
    if fn is None or getattr(cls, name, None) is not fn:
        return None  # not generated, or redefined by a subclass / transform
    return name
