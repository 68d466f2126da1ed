"""Is a Linen wrapper of an NNX module stale? Its spec and methods against the NNX class.

:func:`check_fresh` runs at the first ``init`` / ``apply`` of each wrapper
class (then one dict lookup); the comparison and the error are
:mod:`nnxgen.runtime._stale`'s.
"""

from __future__ import annotations

import dataclasses
import inspect

from flax import nnx

from nnxgen.runtime._linen_wrapper.spec import WrapperSpec, rngs_param
from nnxgen.runtime._stale import (
    FRESH,
    Sig,
    check,
    compare,
    generated_methods,
    method_label,
    method_params,
)

__all__ = ["check_fresh", "nnx_differences"]

_P = inspect.Parameter


def check_fresh(cls: type) -> None:
    """Raise ``StaleWrapperError`` if the generated Linen wrapper class ``cls`` is stale."""
    if cls not in FRESH:
        check(cls, nnx_differences, cls)


def nnx_differences(cls: type) -> tuple[type, type, list[str]] | None:
    """A Linen wrapper of an NNX class: (generated class, NNX class, differences)."""
    owner = next((k for k in cls.__mro__ if "__nnxgen__" in vars(k)), None)
    spec = getattr(owner, "__nnxgen__", None)
    if owner is None or not isinstance(spec, WrapperSpec):
        return None
    nnx_cls = spec.nnx_class
    problems: list[str] = []

    # Constructor: the spec's parameters, required where the field has no default.
    fields = {f.name: f for f in dataclasses.fields(owner)}
    was: dict[str, tuple[str, bool]] = {}
    for p in spec.params:
        f = fields.get(p.field)
        required = (
            f is not None
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        was[p.name] = (p.kind, required)
    init_owner = next((k for k in nnx_cls.__mro__ if "__init__" in vars(k)), None)
    plist: list[inspect.Parameter] = []
    if init_owner is not None and init_owner not in set(nnx.Module.__mro__):
        init = vars(init_owner)["__init__"]
        plist = list(inspect.signature(init).parameters.values())[1:]
    rngs_now = rngs_param(plist)
    rngs_was = (
        None
        if not spec.takes_rngs
        else (spec.takes_rngs if isinstance(spec.takes_rngs, str) else "rngs")
    )
    if rngs_was != rngs_now:
        if rngs_now is None:
            problems.append(f"__init__() no longer takes {rngs_was!r}")
        elif rngs_was is None:
            problems.append(f"__init__() now takes {rngs_now!r} (nnx.Rngs)")
        else:
            problems.append(
                f"__init__() takes its nnx.Rngs as {rngs_now!r}, was {rngs_was!r}"
            )
    now = Sig.of([p for p in plist if p.name != rngs_now])
    was_sig = Sig(was)
    problems += compare("__init__()", was_sig, now, loose_kinds=True, order=False)
    if not problems:
        named = ("POSITIONAL_ONLY", "VAR_POSITIONAL")
        before = [n for n, (k, _) in was.items() if k in named]
        after = [n for n, (k, _) in now.params.items() if k in named]
        if before != after:
            problems.append(
                f"__init__() takes its positional-only parameters in another order: "
                f"({', '.join(after)}), was ({', '.join(before)})"
            )

    # Methods.
    for wname, name, fn in generated_methods(owner, "call"):
        where = method_label(wname, name)
        target = getattr(nnx_cls, name, None)
        if target is None or not callable(target):
            problems.append(f"{where} no longer exists")
            continue
        now_params = method_params(target)
        takes_rngs = any(p.name == "rngs" for p in now_params)
        if takes_rngs != (name in spec.rngs_methods):
            problems.append(
                f"{where} {'now takes' if takes_rngs else 'no longer takes'} 'rngs'"
            )
        now_params = [p for p in now_params if p.name != "rngs"]
        has_train = any(p.name == "train" for p in now_params)
        wrapper_params = [
            p
            for p in method_params(fn)
            if has_train
            or not (
                p.name == "train" and p.kind is _P.KEYWORD_ONLY and p.default is None
            )
        ]
        problems += compare(where, Sig.of(wrapper_params), Sig.of(now_params))
    return owner, nnx_cls, problems
