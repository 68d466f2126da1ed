"""Snippets of NNX wrappers of Linen modules (:class:`LinenClassSpec`).

The counterpart of the class snippets in :mod:`nnxgen.render`; the file-level
work (imports, fingerprint, lint codes) is shared there. Templates:
``nnx_module.py.jinja`` and ``nnx_class.py.jinja``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nnxgen.layout import INDENT, Seq, dict_of, docstring, lay_out, tuple_of
from nnxgen.spec import LinenClassSpec, MethodSpec, ParamSpec

MODULE_TEMPLATE = "nnx_module.py.jinja"
CLASS_TEMPLATE = "nnx_class.py.jinja"
#: The templates an NNX-wrapper file is rendered from (its fingerprint reads them).
TEMPLATES = (CLASS_TEMPLATE, MODULE_TEMPLATE)

_MODE_VIEW_PARAMS = [
    "deterministic: bool | None = None",
    "use_running_average: bool | None = None",
]


def _signature(params: tuple[ParamSpec, ...], kwonly_extra: list[str]) -> list[str]:
    from nnxgen.render import _param_text

    out = ["self"]
    posonly = [p for p in params if p.kind == "POSITIONAL_ONLY"]
    out += [_param_text(p) for p in posonly]
    if posonly:
        out.append("/")
    out += [_param_text(p) for p in params if p.kind == "POSITIONAL_OR_KEYWORD"]
    var = [p for p in params if p.kind == "VAR_POSITIONAL"]
    kwonly = [_param_text(p) for p in params if p.kind == "KEYWORD_ONLY"] + kwonly_extra
    if var:
        out.append(_param_text(var[0]))
    elif kwonly:
        out.append("*")
    out += kwonly
    out += [_param_text(p) for p in params if p.kind == "VAR_KEYWORD"]
    return out


def _def_lines(name: str, params: list[str], returns: str | None) -> str:
    tail = f" -> {returns}:" if returns is not None else ":"
    return "\n".join(lay_out(INDENT, f"def {name}", Seq("(", list(params), ")"), tail))


def _init(cls: LinenClassSpec) -> dict[str, Any]:
    comments = [
        f"{INDENT}# {p.name}: {p.default_comment}"
        for p in cls.fields
        if p.default_comment
    ]
    build = Seq(
        f"{cls.linen_ref}(",
        [f"{p.name}={p.name}" for p in cls.fields],
        ")",
    )
    items: list[str | Seq] = ["self", build, "rngs"]
    if cls.has_modes:
        items.append("modes=True")
    body = lay_out(INDENT * 2, "", Seq("_rt.linen_init(", items, ")"))
    return {
        "comment_lines": "\n".join(comments),
        "def_lines": _def_lines(
            "__init__", _signature(cls.fields, ["rngs: nnx.Rngs"]), "None"
        ),
        "body_lines": "\n".join(body),
    }


def _call_body(m: MethodSpec, modes: tuple[str, ...]) -> list[str]:
    positional: list[str | Seq] = [
        p.name
        for p in m.params
        if p.kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD") and not p.by_keyword
    ]
    positional += [f"*{p.name}" for p in m.params if p.kind == "VAR_POSITIONAL"]
    keyword: list[tuple[str, str | Seq]] = [
        (f'"{p.name}"', p.name)
        for p in m.params
        if p.kind == "KEYWORD_ONLY" or p.by_keyword
    ]
    kw = dict_of(keyword)
    kw.items += [f"**{p.name}" for p in m.params if p.kind == "VAR_KEYWORD"]
    items: list[str | Seq] = [
        "self",
        f'"{m.name}"',
        tuple_of(positional) if positional else "()",
        kw,
    ]
    if modes:
        items.append(tuple_of([f'"{a}"' for a in modes]))
    from nnxgen.render import call_statement

    return call_statement(Seq("_rt.linen_call(", items, ")"), m)


def _method(m: MethodSpec, modes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "def_lines": _def_lines(m.wrapper_name, _signature(m.params, []), m.returns),
        "doc_lines": "\n".join(docstring(m.doc, INDENT * 2, raw=m.doc_raw))
        if m.doc
        else "",
        "body_lines": "\n".join(_call_body(m, modes)),
    }


def _set_view() -> dict[str, Any]:
    return {
        "def_lines": _def_lines("set_view", ["self", *_MODE_VIEW_PARAMS], "None"),
        "doc_lines": "\n".join(
            docstring(
                "The mode the Linen mode arguments follow, for ``nnx.view``.",
                INDENT * 2,
            )
        ),
        "body_lines": f"{INDENT * 2}_rt.linen_set_view(self, deterministic, "
        "use_running_average)",
    }


def class_context(cls: LinenClassSpec) -> dict[str, Any]:
    methods = [
        _method(m, modes) for m, modes in zip(cls.methods, cls.modes, strict=True)
    ]
    if cls.has_modes:
        methods.append(_set_view())
    return {
        "name": cls.name,
        "target": cls.target,
        "doc_lines": "\n".join(docstring(cls.doc, INDENT, raw=cls.doc_raw))
        if cls.doc
        else "",
        "renamed": cls.renamed,
        "init": _init(cls),
        "methods": methods,
    }


def hoist_defaults(
    classes: tuple[LinenClassSpec, ...],
) -> tuple[tuple[LinenClassSpec, ...], list[str]]:
    """Constructor and method defaults that are calls or mutable displays, as
    module constants (evaluated once, as a ``def``'s defaults are; ruff B008/B006)."""
    from nnxgen.render import _assign, _needs_constant

    constants: list[str] = []
    used: set[str] = set()

    def hoist(cls_name: str, where: str, params: tuple[ParamSpec, ...]):
        out = []
        for p in params:
            if p.default is not None and _needs_constant(p.default):
                base = f"_{cls_name}_{where.strip('_')}_{p.name}_default"
                name, n = base, 1
                while name in used:
                    n += 1
                    name = f"{base}{n}"
                used.add(name)
                constants.extend(_assign("", f"{name} = ", p.default))
                p = dataclasses.replace(p, default=name)
            out.append(p)
        return tuple(out)

    result = []
    for cls in classes:
        fields = hoist(cls.name, "init", cls.fields)
        methods = tuple(
            dataclasses.replace(m, params=hoist(cls.name, m.wrapper_name, m.params))
            for m in cls.methods
        )
        result.append(dataclasses.replace(cls, fields=fields, methods=methods))
    return tuple(result), constants
