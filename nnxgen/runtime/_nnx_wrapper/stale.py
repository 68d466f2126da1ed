"""Is an NNX wrapper of a Linen module stale? Its fields and methods against the Linen class.

:func:`check_fresh` runs when each wrapper class is first built or called
(then one dict lookup); the comparison and the error are
:mod:`nnxgen.runtime._stale`'s.
"""

from __future__ import annotations

import inspect

from nnxgen.runtime._nnx_wrapper.mode import MODE_ARGUMENTS
from nnxgen.runtime._stale import (
    FRESH,
    Sig,
    check,
    compare,
    generated_methods,
    method_label,
    method_params,
)

__all__ = ["check_fresh", "linen_differences"]

_P = inspect.Parameter


def check_fresh(cls: type, linen_cls: type) -> None:
    """Raise ``StaleWrapperError`` if the generated NNX wrapper class ``cls`` of the
    Linen class ``linen_cls`` is stale."""
    if cls not in FRESH:
        check(cls, linen_differences, cls, linen_cls)


def linen_differences(
    cls: type, linen_cls: type
) -> tuple[type, type, list[str]] | None:
    """An NNX wrapper of a Linen class: (generated class, Linen class, differences)."""
    owner = next(
        (
            k
            for k in cls.__mro__
            if "__init__" in vars(k)
            and "linen_init"
            in getattr(vars(k)["__init__"], "__code__", _NoCode).co_names
        ),
        None,
    )
    if owner is None:
        return None
    problems: list[str] = []
    was = [p for p in method_params(vars(owner)["__init__"]) if p.name != "rngs"]
    now = [
        p
        for p in method_params(
            next(
                vars(k)["__init__"] for k in linen_cls.__mro__ if "__init__" in vars(k)
            )
        )
        if p.name not in ("parent", "name")
    ]
    # ``features: int`` beside a method ``features``: dataclasses takes the
    # function for the field's default; the generator makes the field required.
    shadowed = frozenset(
        p.name
        for p in now
        if callable(p.default) and p.default is getattr(linen_cls, p.name, None)
    )
    problems += compare(
        "the Linen fields (__init__())",
        Sig.of(was),
        Sig.of(now),
        loose_kinds=True,
        any_required=shadowed,
        order=False,
    )
    for wname, name, fn in generated_methods(owner, "linen_call"):
        where = method_label(wname, name)
        target = getattr(linen_cls, name, None)
        if target is None or not callable(target):
            problems.append(f"{where} no longer exists")
            continue
        now_params = method_params(target)
        modes = frozenset(
            p.name
            for p in now_params
            if p.name in MODE_ARGUMENTS
            and p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)
        )
        problems += compare(
            where, Sig.of(method_params(fn)), Sig.of(now_params), any_required=modes
        )
    return owner, linen_cls, problems


class _NoCode:
    co_names: tuple[str, ...] = ()
