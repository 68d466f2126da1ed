"""The class snippets of a Linen wrapper of an NNX module (:class:`ClassSpec`):
dataclass fields, ``__nnxgen__`` (the runtime's :class:`WrapperSpec`), methods
that call ``_rt.call``. Templates: ``module.py.jinja`` and ``class.py.jinja``."""

from __future__ import annotations

import dataclasses
from typing import Any

from nnxgen.codegen.layout import INDENT, Seq, doc_lines, lay_out, tuple_of
from nnxgen.codegen.signatures import (
    Constants,
    assign,
    call_arguments,
    call_statement,
    signature,
)
from nnxgen.codegen.spec import ClassSpec, MethodSpec

MODULE_TEMPLATE = "module.py.jinja"
CLASS_TEMPLATE = "class.py.jinja"
#: The templates a Linen-wrapper file is rendered from (its fingerprint reads them).
TEMPLATES = (CLASS_TEMPLATE, MODULE_TEMPLATE)


def _method_params(m: MethodSpec) -> list[str]:
    extra = []
    if m.train_param is None and not m.paramspec:
        # (not between `*args: P.args` and `**kwargs: P.kwargs`: that method's
        # mode comes from `nnxgen.runtime.mode`)
        extra.append("train: bool | None = None")
    return signature(m.params, extra)


def _call_body(m: MethodSpec) -> list[str]:
    positional, kw = call_arguments(m)
    mode = m.train_param or ("None" if m.paramspec else "train")
    call = Seq(
        "_rt.call(",
        ["self", f'"{m.name}"', tuple_of(positional) if positional else "()", kw, mode],
        ")",
    )
    return call_statement(call, m)


def _method(m: MethodSpec) -> dict[str, Any]:
    head = f"def {m.wrapper_name}"
    tail = f" -> {m.returns}:" if m.returns is not None else ":"
    params = Seq("(", list(_method_params(m)), ")")
    return {
        "def_lines": "\n".join(lay_out(INDENT, head, params, tail)),
        "doc_lines": doc_lines(m.doc, INDENT * 2, raw=m.doc_raw),
        "body_lines": "\n".join(_call_body(m)),
    }


def field_lines(cls: ClassSpec, dc: str = "dataclasses") -> list[str]:
    """The dataclass fields: constructor parameters, then kontext keys."""
    lines: list[str] = []
    seen_default = False
    # Names bound in the class body (a factory name must not be one of them).
    body_names = {p.field for p in cls.params} | {f.name for f in cls.extra_fields}
    for p in cls.params:
        if p.default_comment:
            lines.append(f"{INDENT}# {p.field}: {p.default_comment}")
        ann = p.annotation or "Any"
        default = p.default
        factory = p.unhashable_default
        if p.kind == "VAR_POSITIONAL":
            ann, default, factory = f"tuple[{ann}, ...]", "()", False
        elif p.kind == "VAR_KEYWORD":
            ann, default, factory = f"dict[str, {ann}]", "{}", True
        lines.extend(
            _field(p.field, ann, default, factory, seen_default, body_names, dc)
        )
        seen_default = seen_default or default is not None
    for f in cls.extra_fields:
        lines.extend(
            _field(f.name, f.annotation, f.default, False, seen_default, body_names, dc)
        )
        seen_default = seen_default or f.default is not None
    return lines


#: Empty-container defaults and the type that makes them (ruff: PIE807, C408).
_EMPTY_FACTORIES = {
    "{}": "dict",
    "dict()": "dict",
    "[]": "list",
    "list()": "list",
    "set()": "set",
}


def _field(
    name: str,
    ann: str,
    default: str | None,
    factory: bool,
    kw_only: bool,
    body_names: set[str],
    dc: str = "dataclasses",
) -> list[str]:
    head = f"{name}: {ann} = "
    if default is None:
        if not kw_only:
            return [f"{INDENT}{name}: {ann}"]
        return lay_out(INDENT, head, Seq(f"{dc}.field(", ["kw_only=True"], ")"))
    if factory:
        value = _EMPTY_FACTORIES.get(default)
        if value is None or value in body_names:
            value = f"lambda: {default}"
        items: list[str | Seq] = [f"default_factory={value}"]
        return lay_out(INDENT, head, Seq(f"{dc}.field(", items, ")"))
    return assign(INDENT, head, default)


def _spec_lines(cls: ClassSpec) -> list[str]:
    params: list[str | Seq] = []
    simple = all(
        p.field == p.name and p.kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")
        for p in cls.params
    )
    for p in cls.params:
        if simple:
            params.append(f'"{p.name}"')
        else:
            params.append(
                Seq("_rt.Param(", [f'"{p.name}"', f'"{p.field}"', f'"{p.kind}"'], ")")
            )
    items: list[str | Seq] = [cls.nnx_ref, tuple_of(params)]
    if not cls.takes_rngs:
        items.append("takes_rngs=False")
    elif isinstance(cls.takes_rngs, str):
        items.append(f'takes_rngs="{cls.takes_rngs}"')
    rngs_methods = [f'"{m.name}"' for m in cls.methods if m.takes_rngs]
    if rngs_methods:
        items.append(Seq("rngs_methods=(", rngs_methods, ")", single_comma=True))
    # methods whose `rngs` is a PRNG key (written only when there are some, so
    # files without one are unchanged)
    key_methods = [f'"{m.name}"' for m in cls.methods if m.takes_rngs and m.key_rngs]
    if key_methods:
        items.append(Seq("key_rngs_methods=(", key_methods, ")", single_comma=True))
    return lay_out(INDENT, "__nnxgen__ = ", Seq("_rt.WrapperSpec(", items, ")"))


def hoist_defaults(
    classes: tuple[ClassSpec, ...],
) -> tuple[tuple[ClassSpec, ...], list[str]]:
    """Method defaults that are calls or mutable displays, as module constants
    (:class:`~nnxgen.codegen.signatures.Constants`)."""
    constants = Constants()
    out = []
    for cls in classes:
        methods = tuple(
            dataclasses.replace(
                m, params=constants.hoist(cls.name, m.wrapper_name, m.params)
            )
            for m in cls.methods
        )
        out.append(dataclasses.replace(cls, methods=methods))
    return tuple(out), constants.lines


def class_context(cls: ClassSpec, dc: str = "dataclasses") -> dict[str, Any]:
    """What ``class.py.jinja`` renders one wrapper class from."""
    return {
        "name": cls.name,
        "target": cls.target,
        "doc_lines": doc_lines(cls.doc, INDENT, raw=cls.doc_raw),
        "field_lines": "\n".join(field_lines(cls, dc)),
        "spec_lines": "\n".join(_spec_lines(cls)),
        "renamed": cls.renamed,
        "methods": [_method(m) for m in cls.methods],
    }


def rebase_classes(text: str, classes: tuple[ClassSpec, ...], nn: str) -> str:
    """``class X(nn.Module):`` lines (the template's) with flax.linen's alias."""
    lines = text.split("\n")
    heads = {f"class {c.name}(nn.Module):" for c in classes}
    return "\n".join(
        f"{line[: -len('(nn.Module):')]}({nn}.Module):" if line in heads else line
        for line in lines
    )
