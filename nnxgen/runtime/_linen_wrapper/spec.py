"""What the generator tells the runtime about a wrapper class (``__nnxgen__``)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

from flax import linen as nn
from flax import nnx

from nnxgen.runtime._linen_wrapper.init_method import install_init

__all__ = [
    "Param",
    "WrapperSpec",
    "is_wrapper",
    "nnx_class_of",
    "nnx_default",
    "rngs_param",
]


@dataclasses.dataclass(frozen=True)
class Param:
    """One NNX constructor parameter and the Linen field that carries it."""

    name: str
    field: str
    kind: str = "POSITIONAL_OR_KEYWORD"  # an ``inspect.Parameter`` kind name


@dataclasses.dataclass(frozen=True)
class WrapperSpec:
    """Static facts about one generated wrapper class (written by the generator)."""

    nnx_class: type
    params: tuple[Param, ...] = ()
    #: True: the constructor takes ``rngs``; a str: the name of its ``nnx.Rngs``
    #: parameter (``rng: nnx.Rngs``); False: it takes none
    takes_rngs: bool | str = True
    rngs_methods: frozenset[str] = frozenset()
    #: methods (also in ``rngs_methods``) whose ``rngs`` parameter is annotated as
    #: a PRNG key (``jax.Array``...), not an ``nnx.Rngs``: the runtime passes
    #: ``make_rng("dropout")`` (see ``rngs.method_key``)
    key_rngs_methods: frozenset[str] = frozenset()

    def __init__(
        self,
        nnx_class: type,
        params: Sequence[Param | str] = (),
        *,
        takes_rngs: bool | str = True,
        rngs_methods: Iterable[str] = (),
        key_rngs_methods: Iterable[str] = (),
    ):
        object.__setattr__(self, "nnx_class", nnx_class)
        object.__setattr__(
            self,
            "params",
            tuple(p if isinstance(p, Param) else Param(p, p) for p in params),
        )
        object.__setattr__(self, "takes_rngs", takes_rngs)
        keyed = frozenset(key_rngs_methods)
        object.__setattr__(self, "rngs_methods", frozenset(rngs_methods) | keyed)
        object.__setattr__(self, "key_rngs_methods", keyed)

    def __set_name__(self, owner: type, name: str) -> None:
        # Runs when the generated class body is executed: gives the wrapper an
        # ``init`` that tells the runtime its output is discarded (see .init).
        install_init(owner)


def is_wrapper(obj: Any) -> bool:
    """True for instances of nnxgen-generated Linen wrappers."""
    return isinstance(obj, nn.Module) and isinstance(
        getattr(type(obj), "__nnxgen__", None), WrapperSpec
    )


def nnx_class_of(wrapper: nn.Module | type) -> type:
    """The NNX class a generated wrapper (class or instance) stands for."""
    cls = wrapper if isinstance(wrapper, type) else type(wrapper)
    spec = getattr(cls, "__nnxgen__", None)
    if not isinstance(spec, WrapperSpec):
        raise TypeError(f"{cls.__name__} is not an nnxgen-generated wrapper")
    return spec.nnx_class


def nnx_default(cls: type, param: str, method: str = "__init__") -> Any:
    """The default of ``param`` in the NNX signature (for defaults not importable as written)."""
    return inspect.signature(getattr(cls, method)).parameters[param].default


def rngs_param(params: Sequence[inspect.Parameter]) -> str | None:
    """The NNX constructor parameter a wrapper fills with ``nnx.Rngs`` (or None).

    ``rngs`` (the flax convention); else the first keyword-passable parameter
    annotated ``nnx.Rngs`` (``def __init__(self, rng: nnx.Rngs, ...)``). ``params``
    excludes ``self``. Shared by the generator and the stale-file check.
    """
    if any(p.name == "rngs" for p in params):
        return "rngs"
    for p in params:
        ann = p.annotation
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and (
            ann is nnx.Rngs or (isinstance(ann, str) and ann.split(".")[-1] == "Rngs")
        ):
            return p.name
    return None
