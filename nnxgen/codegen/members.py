"""What a class offers its wrapper besides parameters: its public methods (in
source order), their signatures and docstrings, its type parameters, and free
names for members that must be renamed."""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any

from nnxgen.codegen import exprs
from nnxgen.codegen.errors import InspectError
from nnxgen.codegen.names import nnx_bases
from nnxgen.codegen.resolve import Context, rewrite
from nnxgen.codegen.spec import Import, ParamSpec


def signature_of(fn: Any, what: str) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as err:
        raise InspectError(f"{what}: cannot read its signature ({err})") from None


def owner_of(cls: type, name: str) -> type | None:
    for k in cls.__mro__:
        if name in vars(k):
            return k
    return None


def _is_method(owner: type, name: str, raw: Any) -> bool:
    """Whether a function found in a class body is a method of it.

    A function stored as a class attribute (``act_layer: Callable = nnx.gelu``)
    is data, not a method: it was defined elsewhere and takes no ``self``.
    """
    fn = inspect.unwrap(raw)
    qual = getattr(fn, "__qualname__", "") or ""
    if qual.rpartition(".")[0] == owner.__qualname__ and fn.__name__ != "<lambda>":
        return True  # defined in this class body (possibly decorated)
    if name in vars(owner).get("__annotations__", {}):
        return False  # an annotated attribute that holds a function
    try:
        params = list(inspect.signature(raw).parameters.values())
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0].name == "self"


def public_methods(cls: type, bases: set[type] | None = None) -> list[str]:
    """Public methods (and ``__call__``, first) in source order: the class's own,
    then those it inherits, each class's in the order its body defines them
    (``bases``: the framework classes whose members are not the user's; by
    default ``nnx.Module``'s)."""
    bases = nnx_bases() if bases is None else bases
    names: list[str] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass in bases:
            continue
        for name in vars(klass):
            if name in seen:
                continue
            seen.add(name)
            if name != "__call__" and name.startswith("_"):
                continue
            owner = owner_of(cls, name)
            if owner is None or owner in bases:
                continue
            raw = vars(owner)[name]
            if isinstance(raw, (staticmethod, classmethod, property, type)):
                continue
            if not inspect.isfunction(inspect.unwrap(raw)) and not inspect.isfunction(
                raw
            ):
                continue
            if not _is_method(owner, name, raw):
                continue
            names.append(name)
    if "__call__" in names:
        names.remove("__call__")
        names.insert(0, "__call__")
    return names


#: What ``inspect.cleandoc`` counts as indentation, less the tab (kept as content).
_INDENT_CHARS = (
    "\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _cleandoc(doc: str) -> str:
    """``inspect.cleandoc`` without expanding tabs (a docstring's tabs are content)."""
    lines = doc.split("\n")  # not splitlines(): "\r", "\x0c", ... are content
    indents = [
        len(line) - len(line.lstrip(_INDENT_CHARS))
        for line in lines[1:]
        if line.strip()
    ]
    margin = min(indents, default=0)
    out = [lines[0].strip()] + [line[margin:].rstrip() for line in lines[1:]]
    while out and not out[-1]:
        out.pop()
    while out and not out[0]:
        out.pop(0)
    return "\n".join(out)


def doc_of(obj: Any) -> str | None:
    doc = (
        obj.__dict__.get("__doc__")
        if isinstance(obj, type)
        else getattr(obj, "__doc__", None)
    )
    return clean_doc(doc)


def clean_doc(doc: Any) -> str | None:
    """A docstring as the wrapper writes it (None: none to write)."""
    if not isinstance(doc, str) or not doc.strip():
        return None
    # A run-time repr a decorator or dataclasses put in (``<... object at 0x7f...>``)
    # would make the file differ on every run: its address is dropped.
    return _cleandoc(_ADDRESS.sub(">", doc))


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def free_name(name: str, taken: set[str]) -> str:
    """``name`` with as many trailing underscores as it takes to be free."""
    name += "_"
    while name in taken:
        name += "_"
    return name


def class_generics(ctx: Context, cls: type, target: str) -> tuple[str, str]:
    """(PEP 695 type parameters, ``Generic[...]`` base) the wrapper of a generic
    ``cls`` declares, so that annotations using its type variables keep their
    meaning: ``class Box[T](nnx.Module)`` -> ``("[T]", "")``,
    ``class Agent(nnx.Module, Generic[TObs, TAct])`` -> ``("", "Generic[TObs, TAct]")``
    (the type variables imported the way the source imports them)."""
    what = f"{target} type parameters"
    tparams = vars(cls).get("__type_params__", ())
    if tparams:
        written = ctx.src.class_type_params(cls.__qualname__) if ctx.src else None
        if written is None or [w[1] for w in written] != [t.__name__ for t in tparams]:
            written = [(_type_param_kind(t), t.__name__, None, None) for t in tparams]
        items = []
        for kind, name, bound, default in written:
            text = {"TypeVarTuple": "*", "ParamSpec": "**"}.get(kind, "") + name
            if bound is not None:
                text += ": " + rewrite(ctx, bound, annotation=True, what=what)
            if default is not None:
                text += " = " + rewrite(ctx, default, annotation=True, what=what)
            items.append(text)
        return f"[{', '.join(items)}]", ""
    params = vars(cls).get("__parameters__", ())
    if not params:
        return "", ""
    items = []
    for tv in params:
        name = getattr(tv, "__name__", None)
        if not isinstance(name, str) or vars(ctx.module).get(name) is not tv:
            name = next(
                (
                    n
                    for n, o in vars(ctx.module).items()
                    if o is tv and n.isidentifier()
                ),
                None,
            )
        if name is None:
            raise InspectError(
                f"{what}: the type variable {tv!r} is not bound to a name in "
                f"{ctx.module.__name__}; define it at module level"
            )
        text = rewrite(ctx, name, annotation=True, what=what)
        star = "*" if _type_param_kind(tv) == "TypeVarTuple" else ""
        items.append(star + text)
    generic, imps = ctx.names.bind(
        "Generic", typing.Generic, [Import("typing", "Generic")]
    )
    ctx.imports.update(imps)
    return "", f"{generic}[{', '.join(items)}]"


def _type_param_kind(tv: Any) -> str:
    return type(tv).__name__  # TypeVar, ParamSpec or TypeVarTuple


def takes_paramspec(params: list[ParamSpec] | tuple[ParamSpec, ...]) -> bool:
    """Whether a method takes ``*args: P.args, **kwargs: P.kwargs`` (a ParamSpec)."""

    def annotated(kind: str, attr: str) -> bool:
        for p in params:
            if p.kind == kind and p.annotation is not None:
                try:
                    chain = exprs.chain(exprs.parse(p.annotation))
                except exprs.ExprError:
                    return False
                return bool(chain) and len(chain) > 1 and chain[-1] == attr
        return False

    return annotated("VAR_POSITIONAL", "args") and annotated("VAR_KEYWORD", "kwargs")
