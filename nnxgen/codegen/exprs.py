"""Expressions copied from user source: name rewriting and ruff-style printing.

An annotation or default is parsed with :mod:`ast`, its free names are passed
to a resolver (which records the import the generated file needs, or rewrites
the name), and the result is printed the way ``ruff format`` prints it: spacing
normalised, literals kept as written except for quote style.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

#: resolver(parts, node) -> replacement node (or the same node)
Resolver = Callable[[list[str], ast.expr], ast.expr]

#: subscript(parts, node, visit) -> what to print for ``parts[...]`` (``visit``
#: rewrites a sub-expression as an annotation), or None for the usual handling.
#: Its "data" kind keeps every element but the first as data (jaxtyping's
#: ``Float[Array, "batch dim"]``: the dimension string is no forward reference).
Subscript = Callable[[list[str], ast.Subscript, Callable[[ast.expr], ast.expr]], object]
DATA_AFTER_FIRST = "data-after-first"


class ExprError(ValueError):
    pass


def parse(text: str) -> ast.expr:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ExprError(f"not an expression: {text!r}") from err


def chain(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


class _Rewriter(ast.NodeTransformer):
    def __init__(
        self,
        resolver: Resolver,
        unquote: bool,
        source: str,
        subscript: Subscript | None = None,
    ):
        self.resolver = resolver
        self.unquote = unquote
        self.source = source
        self.subscript = subscript
        self.bound: list[set[str]] = [set()]

    def _is_bound(self, name: str) -> bool:
        return any(name in scope for scope in self.bound)

    def visit_Lambda(self, node: ast.Lambda):
        args = node.args
        names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        if args.vararg:
            names.add(args.vararg.arg)
        if args.kwarg:
            names.add(args.kwarg.arg)
        node.args.defaults = [self.visit(d) for d in args.defaults]
        node.args.kw_defaults = [
            self.visit(d) if d is not None else None for d in args.kw_defaults
        ]
        self.bound.append(names)
        node.body = self.visit(node.body)
        self.bound.pop()
        return node

    def _comprehension(self, node):
        names: set[str] = set()
        for gen in node.generators:
            for n in ast.walk(gen.target):
                if isinstance(n, ast.Name):
                    names.add(n.id)
        self.bound.append(names)
        self.generic_visit(node)
        self.bound.pop()
        return node

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = (
        _comprehension
    )

    def visit_Attribute(self, node: ast.Attribute):
        parts = chain(node)
        if parts is None:
            self.generic_visit(node)
            return node
        if self._is_bound(parts[0]):
            return node
        return self.resolver(parts, node)

    def visit_Name(self, node: ast.Name):
        if self._is_bound(node.id):
            return node
        return self.resolver([node.id], node)

    def visit_Constant(self, node: ast.Constant):
        if self.unquote and isinstance(node.value, str):
            # A string annotation (forward reference): use the expression itself;
            # the generated file has `from __future__ import annotations`.
            try:
                inner = parse(node.value)
            except ExprError:
                return node
            for n in ast.walk(inner):
                for attr in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
                    if hasattr(n, attr):
                        delattr(n, attr)
            # Forward references nested in it ("tuple[int, 'Later']") too.
            return self.visit(inner)
        return node

    def visit_Subscript(self, node: ast.Subscript):
        # Literal["a"] keeps its strings; other subscripts may hold forward refs.
        parts = chain(node.value)
        special = None
        if parts and self.subscript is not None and not self._is_bound(parts[0]):
            special = self.subscript(parts, node, self.visit)
        if isinstance(special, ast.expr):
            return special
        node.value = self.visit(node.value)
        if special == DATA_AFTER_FIRST:
            elts = (
                node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            )
            first, *meta = elts
            saved, self.unquote = self.unquote, False
            meta = [self.visit(m) for m in meta]
            self.unquote = saved
            if isinstance(node.slice, ast.Tuple):
                node.slice.elts = [self.visit(first), *meta]
            else:
                node.slice = self.visit(first)
        elif parts and parts[-1] == "Literal":
            saved, self.unquote = self.unquote, False
            node.slice = self.visit(node.slice)
            self.unquote = saved
        elif (
            parts
            and parts[-1] == "Annotated"
            and isinstance(node.slice, ast.Tuple)
            and node.slice.elts
        ):
            # Annotated[T, *metadata]: only T is a type; metadata strings are data.
            first, *meta = node.slice.elts
            saved, self.unquote = self.unquote, False
            meta = [self.visit(m) for m in meta]
            self.unquote = saved
            node.slice.elts = [self.visit(first), *meta]
        else:
            node.slice = self.visit(node.slice)
        return node


_STR_PREFIX = re.compile(r"^([rRbBuUfF]*)('''|\"\"\"|'|\")", re.DOTALL)


def _sub_twice(regex: re.Pattern[str], replacement: str, text: str) -> str:
    # (twice: matches that share a character overlap)
    return regex.sub(replacement, regex.sub(replacement, text))


def _normalize_string(segment: str) -> str:
    """A one-line string literal as ruff formats it (Black's quote preference).

    Prefix lowercased (``u`` dropped); double quotes unless they need more
    backslashes than the single quotes; needless escapes of the other quote
    removed. Raw strings never gain or lose a backslash.
    """
    m = _STR_PREFIX.match(segment)
    if m is None:
        return segment
    prefix, orig = m.group(1), m.group(2)
    if len(orig) == 3 or not segment.endswith(orig) or len(segment) < len(prefix) + 2:
        return segment
    prefix = prefix.lower().replace("u", "")
    new = "'" if orig == '"' else '"'
    body = segment[len(m.group(1)) + 1 : -1]
    if "r" in prefix:
        if body.count(new) != body.count(f"\\{new}"):
            return prefix + orig + body + orig
        new_body = body
    else:
        escaped_new = re.compile(rf"([^\\]|^)\\((?:\\\\)*){new}")
        escaped_orig = re.compile(rf"([^\\]|^)\\((?:\\\\)*){orig}")
        unescaped_new = re.compile(rf"(([^\\]|^)(\\\\)*){new}")
        body = _sub_twice(escaped_new, rf"\1\2{new}", body)
        new_body = _sub_twice(escaped_orig, rf"\1\2{orig}", body)
        new_body = _sub_twice(unescaped_new, rf"\1\\{new}", new_body)
    if new_body.count("\\") > body.count("\\") or (
        new_body.count("\\") == body.count("\\") and orig == '"'
    ):
        return prefix + orig + body + orig
    return prefix + new + new_body + new


def _normalize_number(segment: str) -> str:
    """A number literal as ruff formats it: ``0XfF`` -> ``0xFF``, ``1E+05`` -> ``1e05``,
    ``.5`` -> ``0.5``, ``2.`` -> ``2.0``, ``1J`` -> ``1j``."""
    s = segment
    if s[:2].lower() in ("0x", "0o", "0b"):
        head, digits = s[:2].lower(), s[2:]
        return head + (digits.upper() if head == "0x" else digits)
    s = s.lower()
    suffix = "j" if s.endswith("j") else ""
    mantissa, e, exponent = s.removesuffix(suffix).partition("e")
    if mantissa.startswith("."):
        mantissa = "0" + mantissa
    if mantissa.endswith("."):
        mantissa += "0"
    return mantissa + e + exponent.removeprefix("+") + suffix


def _segment(source: str, node: ast.AST) -> str | None:
    # (Python 3.12+ returns "" where 3.11 raised: a node parsed from other text.)
    try:
        return ast.get_source_segment(source, node) or None
    except IndexError:
        return None


class _Unparser(ast._Unparser):  # type: ignore[name-defined,misc]
    """ast's unparser, printing literals as written (ruff-normalised)."""

    def __init__(self, source: str):
        super().__init__()
        self._text = source

    def visit_Constant(self, node):
        segment = None
        if getattr(node, "lineno", None) is not None and hasattr(
            node, "end_col_offset"
        ):
            segment = _segment(self._text, node)
        if segment is not None and "\n" not in segment:
            if isinstance(node.value, (str, bytes)):
                if (
                    re.match(r"^[rRuUbB]{0,2}('|\")", segment)
                    and segment.count(segment[-1]) >= 2
                ):
                    # Single literal (not an implicit concatenation).
                    try:
                        if ast.literal_eval(segment) == node.value:
                            self.write(_normalize_string(segment))
                            return
                    except (ValueError, SyntaxError):
                        pass
            elif isinstance(node.value, (int, float, complex)) and not isinstance(
                node.value, bool
            ):
                self.write(_normalize_number(segment))
                return
        if isinstance(node.value, (str, bytes)):
            text = repr(node.value)
            self.write(_normalize_string(text))
            return
        super().visit_Constant(node)


def rewrite(
    text: str,
    resolver: Resolver,
    *,
    annotation: bool = False,
    subscript: Subscript | None = None,
) -> str:
    """Print ``text`` ruff-style with every free name passed through ``resolver``."""
    source = text.strip()
    node = parse(source)
    node = _Rewriter(resolver, annotation, source, subscript).visit(node)
    return _Unparser(source).visit(node)


def unparse(node: ast.expr) -> str:
    return _Unparser("").visit(node)


def admits_none(annotation: str) -> bool:
    """Whether an annotation (text) spells out that None is allowed.

    ``None``, ``Optional[...]``, a ``Union``/``|`` with such a member,
    ``Annotated[T, ...]`` of such a ``T``, ``Literal[..., None]``, ``Any`` and
    ``object``; quoted annotations are read. Anything else does not (a type
    alias that hides an Optional counts as not).
    """

    def visit(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                try:
                    return visit(ast.parse(node.value.strip(), mode="eval").body)
                except SyntaxError:
                    return True  # not an annotation we can read: leave it alone
            return node.value is None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return visit(node.left) or visit(node.right)
        if isinstance(node, ast.Subscript):
            names = chain(node.value)
            name = names[-1] if names else None
            elts = (
                node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            )
            if name == "Optional":
                return True
            if name == "Union":
                return any(visit(e) for e in elts)
            if name == "Annotated":
                return visit(elts[0])
            if name == "Literal":
                return any(
                    isinstance(e, ast.Constant) and e.value is None for e in elts
                )
            return False
        names = chain(node) if isinstance(node, (ast.Name, ast.Attribute)) else None
        return bool(names) and names[-1] in ("Any", "object")

    return visit(parse(annotation.strip()))


def or_none(annotation: str) -> str:
    """``annotation | None``: PEP 484's explicit form of an implicit Optional."""
    node = parse(annotation.strip())
    if isinstance(
        node, (ast.IfExp, ast.Lambda, ast.NamedExpr, ast.BoolOp, ast.Compare)
    ):
        annotation = f"({annotation})"
    return f"{annotation} | None"
