"""NNX wrappers of Linen modules: set a generated ``nnx.Module`` up to run its Linen module.

A generated class's ``__init__`` first calls :func:`linen_check_fresh`, then
builds the Linen module from its typed arguments and hands it to
:func:`linen_init`: the Linen module lives at
``to_nnx__module``, the (forked) ``nnx.Rngs`` at ``to_nnx__rngs`` (as in
``flax.nnx.bridge.ToNNX``), and with mode arguments the ``deterministic`` /
``use_running_average`` attributes that ``.train()`` / ``.eval()`` /
``nnx.view`` set (:func:`linen_set_view`). :func:`linen_default` serves
defaults whose source text the generated file cannot import.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._errors import NnxgenError
from nnxgen.runtime._nnx_wrapper.mode import MODE_ATTRIBUTES
from nnxgen.runtime._nnx_wrapper.stale import check_fresh

__all__ = [
    "MODULE",
    "RNGS",
    "linen_check_fresh",
    "linen_default",
    "linen_init",
    "linen_set_view",
]

#: Where the wrapper holds the Linen module (``ToNNX``'s attribute) and its rngs.
MODULE = _compat.TONNX_MODULE
RNGS = "to_nnx__rngs"


def linen_check_fresh(self: nnx.Module, linen_cls: type) -> None:
    """Raise ``StaleWrapperError`` if ``type(self)``'s generated file is stale
    against ``linen_cls`` (once per class; then one dict lookup).

    The first line of a generated ``__init__``, before it builds the Linen
    module: a Linen class that gained a required field, or lost or renamed one
    the file passes, would otherwise fail in ``_LinenX(field=...)`` with a bare
    ``TypeError`` before :func:`linen_init` could name the difference and the
    command that regenerates the file. A separate call (rather than handing the
    class and its arguments to :func:`linen_init`) keeps that construction a
    plain call that type checkers check against the dataclass, and keeps
    :func:`linen_init`'s signature, so files generated without this line run
    as before (:func:`linen_init` still checks; cached, it costs a lookup).
    """
    check_fresh(type(self), linen_cls)


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
    # a stale generated file: say so (files written before linen_check_fresh)
    check_fresh(type(self), type(module))
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
    setattr(self, MODULE, module)
    setattr(self, RNGS, forked)
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
    for f in dataclasses.fields(linen_cls):
        if f.name == field:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise NnxgenError(
        f"{linen_cls.__qualname__} has no field {field!r} with a default; regenerate the wrapper"
    )
