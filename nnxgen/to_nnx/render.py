"""The class snippets of an NNX wrapper of a Linen module (:class:`LinenClassSpec`):
an ``__init__`` that checks the file is fresh (``_rt.linen_check_fresh``) and
builds the Linen module (``_rt.linen_init``), methods that
call ``_rt.linen_call``, ``set_view`` for mode arguments. The counterpart of
:mod:`nnxgen.to_linen.render`; the file-level work (imports, fingerprint, ruff)
is :mod:`nnxgen.render`'s. Templates: ``nnx_module.py.jinja`` and
``nnx_class.py.jinja``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nnxgen.codegen.layout import INDENT, Seq, doc_lines, lay_out, tuple_of
from nnxgen.codegen.signatures import (
    Constants,
    call_arguments,
    call_statement,
    signature,
)
from nnxgen.codegen.spec import LinenClassSpec, MethodSpec

MODULE_TEMPLATE = "nnx_module.py.jinja"
CLASS_TEMPLATE = "nnx_class.py.jinja"
#: The templates an NNX-wrapper file is rendered from (its fingerprint reads them).
TEMPLATES = (CLASS_TEMPLATE, MODULE_TEMPLATE)

_MODE_VIEW_PARAMS = [
    "deterministic: bool | None = None",
    "use_running_average: bool | None = None",
]


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
    # The stale check first, on a line of its own: a Linen class that gained a
    # required field (or lost one the file passes) would fail in `build` with a
    # bare TypeError before `linen_init` could say the file is stale. `build`
    # stays a typed call and `linen_init` keeps its signature (older files too).
    # Written here, not in nnx_class.py.jinja, so user templates get it too.
    body = [
        f"{INDENT * 2}_rt.linen_check_fresh(self, {cls.linen_ref})",
        *lay_out(INDENT * 2, "", Seq("_rt.linen_init(", items, ")")),
    ]
    return {
        "comment_lines": "\n".join(comments),
        "def_lines": _def_lines(
            "__init__", signature(cls.fields, ["rngs: nnx.Rngs"]), "None"
        ),
        "body_lines": "\n".join(body),
    }


def _call_body(m: MethodSpec, modes: tuple[str, ...]) -> list[str]:
    positional, kw = call_arguments(m)
    items: list[str | Seq] = [
        "self",
        f'"{m.name}"',
        tuple_of(positional) if positional else "()",
        kw,
    ]
    if modes:
        items.append(tuple_of([f'"{a}"' for a in modes]))
    return call_statement(Seq("_rt.linen_call(", items, ")"), m)


def _method(m: MethodSpec, modes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "def_lines": _def_lines(m.wrapper_name, signature(m.params, []), m.returns),
        "doc_lines": doc_lines(m.doc, INDENT * 2, raw=m.doc_raw),
        "body_lines": "\n".join(_call_body(m, modes)),
    }


def _set_view() -> dict[str, Any]:
    return {
        "def_lines": _def_lines("set_view", ["self", *_MODE_VIEW_PARAMS], "None"),
        "doc_lines": doc_lines(
            "The mode the Linen mode arguments follow, for ``nnx.view``.", INDENT * 2
        ),
        "body_lines": f"{INDENT * 2}_rt.linen_set_view(self, deterministic, "
        "use_running_average)",
    }


def class_context(cls: LinenClassSpec) -> dict[str, Any]:
    """What ``nnx_class.py.jinja`` renders one wrapper class from."""
    methods = [
        _method(m, modes) for m, modes in zip(cls.methods, cls.modes, strict=True)
    ]
    if cls.has_modes:
        methods.append(_set_view())
    return {
        "name": cls.name,
        "target": cls.target,
        "doc_lines": doc_lines(cls.doc, INDENT, raw=cls.doc_raw),
        "renamed": cls.renamed,
        "init": _init(cls),
        "methods": methods,
    }


def hoist_defaults(
    classes: tuple[LinenClassSpec, ...],
) -> tuple[tuple[LinenClassSpec, ...], list[str]]:
    """Constructor and method defaults that are calls or mutable displays, as
    module constants (evaluated once, as a ``def``'s defaults are; ruff B008/B006)."""
    constants = Constants()
    result = []
    for cls in classes:
        fields = constants.hoist(cls.name, "init", cls.fields)
        methods = tuple(
            dataclasses.replace(
                m, params=constants.hoist(cls.name, m.wrapper_name, m.params)
            )
            for m in cls.methods
        )
        result.append(dataclasses.replace(cls, fields=fields, methods=methods))
    return tuple(result), constants.lines
