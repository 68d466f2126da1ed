"""Signature and call snippets both directions' wrappers write: a parameter list,
the arguments a wrapper passes on, the ``return`` of a call, and the module
constants that take defaults ruff flags in a signature (B008, B006)."""

from __future__ import annotations

import ast
import dataclasses

from nnxgen.codegen.layout import INDENT, Seq, dict_of, lay_out
from nnxgen.codegen.spec import MethodSpec, ParamSpec


def param_text(p: ParamSpec) -> str:
    """One parameter as a signature writes it (``*args: T``, ``x: int = 3``)."""
    prefix = {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}.get(p.kind, "")
    text = f"{prefix}{p.name}"
    if p.annotation is not None:
        text += f": {p.annotation}"
    if p.default is not None:
        text += f" = {p.default}" if p.annotation is not None else f"={p.default}"
    return text


def signature(params: tuple[ParamSpec, ...], kwonly_extra: list[str]) -> list[str]:
    """``self``, then ``params`` in Python's order (``/`` and ``*`` where needed),
    ``kwonly_extra`` after the keyword-only ones."""
    out = ["self"]
    posonly = [p for p in params if p.kind == "POSITIONAL_ONLY"]
    out += [param_text(p) for p in posonly]
    if posonly:
        out.append("/")
    out += [param_text(p) for p in params if p.kind == "POSITIONAL_OR_KEYWORD"]
    var = [p for p in params if p.kind == "VAR_POSITIONAL"]
    kwonly = [param_text(p) for p in params if p.kind == "KEYWORD_ONLY"] + kwonly_extra
    if var:
        out.append(param_text(var[0]))
    elif kwonly:
        out.append("*")
    out += kwonly
    out += [param_text(p) for p in params if p.kind == "VAR_KEYWORD"]
    return out


def call_arguments(m: MethodSpec) -> tuple[list[str | Seq], Seq]:
    """(positional arguments, ``{"name": name, ..., **kwargs}``) passing a
    method's parameters on to the runtime."""
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
    return positional, kw


def returns_never(returns: str | None) -> bool:
    """Whether a return annotation says the method never returns (``NoReturn``)."""
    if returns is None:
        return False
    try:
        node = ast.parse(returns, mode="eval").body
    except SyntaxError:
        return False
    while isinstance(node, ast.Attribute):
        if node.attr in ("NoReturn", "Never"):
            return True
        node = node.value
    return isinstance(node, ast.Name) and node.id in ("NoReturn", "Never")


def call_statement(call: Seq, m: MethodSpec) -> list[str]:
    """The body that runs ``call``: ``return call``, or for a method that never
    returns (``-> NoReturn``) the call and a ``raise`` type checkers accept."""
    if not returns_never(m.returns):
        return lay_out(INDENT * 2, "return ", call)
    message = f"{m.name} returned; its annotation says it never does"
    return [
        *lay_out(INDENT * 2, "", call),
        f'{INDENT * 2}raise AssertionError("{message}")',
    ]


def assign(indent: str, head: str, value: str) -> list[str]:
    """``head + value`` (an assignment), on one line (ruff splits it later)."""
    return [f"{indent}{head}{value}"]


def needs_constant(expr: str) -> bool:
    """A default ruff flags in a signature: a call (outside a lambda; B008) or a
    list/dict/set display or comprehension (B006)."""

    def has_call(node: ast.AST) -> bool:
        if isinstance(node, ast.Lambda):
            return False
        if isinstance(node, ast.Call):
            return True
        return any(has_call(child) for child in ast.iter_child_nodes(node))

    node = ast.parse(expr, mode="eval").body
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
    return isinstance(node, mutable) or has_call(node)


class Constants:
    """Signature defaults that are calls or mutable displays, moved to module
    constants (``lines``, assigned before the classes).

    A signature default is evaluated once, when the ``def`` runs; a constant
    assigned just before the class is evaluated once too, so every call sees
    one default object, as in the wrapped method, and the signature stays
    lint-clean (ruff B008, B006).
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._used: set[str] = set()

    def hoist(
        self, cls_name: str, where: str, params: tuple[ParamSpec, ...]
    ) -> tuple[ParamSpec, ...]:
        """``params`` with such defaults replaced by the constants' names."""
        out = []
        for p in params:
            if p.default is not None and needs_constant(p.default):
                base = f"_{cls_name}_{where.strip('_')}_{p.name}_default"
                name, n = base, 1
                while name in self._used:
                    n += 1
                    name = f"{base}{n}"
                self._used.add(name)
                self.lines += assign("", f"{name} = ", p.default)
                p = dataclasses.replace(p, default=name)
            out.append(p)
        return tuple(out)
