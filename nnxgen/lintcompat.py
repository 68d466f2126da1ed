"""Keep copied annotations and defaults verbatim and the generated file lint-clean.

Annotations and defaults are copied exactly as the NNX author wrote them, so
they may use ``Optional[X]``, ``Union[...]`` or ``List[...]`` (ruff's pyupgrade
rules UP045/UP007/UP006), ``x: int = None`` (RUF013, implicit Optional) or
``dict()`` (C408). nnxgen does not rewrite them; it records exactly the rules
they trigger in a file-level ``# ruff: noqa:`` line (an unused code would itself
be flagged, RUF100, so the list is computed the way ruff decides, never fixed).
Imports of ABCs through ``typing`` are taken from ``collections.abc`` instead
(the same annotation text, the non-deprecated source).
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import sys

from nnxgen.spec import Import

_ABC = frozenset(
    {
        "AsyncGenerator", "AsyncIterable", "AsyncIterator", "Awaitable", "ByteString",
        "Callable", "Collection", "Container", "Coroutine", "Generator", "Hashable",
        "ItemsView", "Iterable", "Iterator", "KeysView", "Mapping", "MappingView",
        "MutableMapping", "MutableSequence", "MutableSet", "Reversible", "Sequence",
        "Sized", "ValuesView",
    }
)  # fmt: skip
_TYPING = frozenset({"typing", "typing_extensions"})
_UP006 = frozenset(
    {"List", "Dict", "Tuple", "Set", "FrozenSet", "Type", "Deque", "DefaultDict"}
)


def modernize_imports(imports: set[Import]) -> set[Import]:
    out = set()
    for i in imports:
        if i.module in _TYPING and i.name in _ABC:
            i = dataclasses.replace(i, module="collections.abc")
        out.add(i)
    return out


def _typing_names(tree: ast.Module) -> tuple[set[str], dict[str, str]]:
    modules: set[str] = set()
    members: dict[str, str] = {}

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in _TYPING:
                        modules.add(a.asname or a.name)
            elif isinstance(node, ast.ImportFrom) and node.module in _TYPING:
                for a in node.names:
                    members[a.asname or a.name] = a.name
            elif isinstance(node, ast.If):
                visit(node.body)

    visit(tree.body)
    return modules, members


def _annotations(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            yield node.annotation
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None and arg.annotation is not None:
                    yield arg.annotation
            if node.returns is not None:
                yield node.returns


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Name bound by an import (also under ``if TYPE_CHECKING:``) -> qualified name."""
    out: dict[str, str] = {}

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        out[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        out[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    out[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.If):
                visit(node.body)

    visit(tree.body)
    return out


def _locally_bound(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


class _ImplicitOptional:
    """ruff's RUF013: ``param: T = None`` where ``T`` is *known* not to allow None.

    ruff only flags hints it can resolve: builtins and standard-library types
    (``int``, ``list[X]``, ``typing.Sequence[X]``, ``collections.OrderedDict``,
    unions and ``Annotated`` of those, quoted or not). Third-party and local
    names (``jax.Array``, a module-level alias, a TypeVar) may allow None.
    """

    def __init__(self, tree: ast.Module):
        self.imported = _imported_names(tree)
        self.local = _locally_bound(tree)

    def qualified(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            if node.id in self.imported:
                return self.imported[node.id]
            if node.id in self.local or not hasattr(builtins, node.id):
                return None
            return f"builtins.{node.id}"
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    @staticmethod
    def known(q: str | None) -> bool:
        return q is not None and (
            q.startswith("builtins.") or q.split(".")[0] in sys.stdlib_module_names
        )

    def allows_none(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                try:
                    inner = ast.parse(node.value.strip(), mode="eval").body
                except SyntaxError:
                    return True
                return self.allows_none(inner)
            return node.value is None or node.value is Ellipsis
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.allows_none(node.left) or self.allows_none(node.right)
        if isinstance(node, ast.Subscript):
            q = self.qualified(node.value)
            name = q.rsplit(".", 1)[-1] if q and q.split(".")[0] in _TYPING else None
            elts = (
                node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            )
            if name == "Optional":
                return True
            if name == "Union":
                return any(self.allows_none(e) for e in elts)
            if name == "Annotated":
                return self.allows_none(elts[0])
            if name == "Literal":
                return any(
                    isinstance(e, ast.Constant) and e.value is None for e in elts
                )
            return not self.known(q)
        if isinstance(node, (ast.Name, ast.Attribute)):
            q = self.qualified(node)
            if q in ("typing.Any", "typing_extensions.Any", "builtins.object"):
                return True
            return not self.known(q)
        return True

    def flags(self, tree: ast.Module) -> bool:
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = fn.args
            positional = [*a.posonlyargs, *a.args]
            pairs = list(
                zip(positional[len(positional) - len(a.defaults) :], a.defaults)
            )
            pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d]
            for arg, default in pairs:
                if (
                    isinstance(default, ast.Constant)
                    and default.value is None
                    and arg.annotation is not None
                    and not self.allows_none(arg.annotation)
                ):
                    return True
        return False


def _literal_call(tree: ast.Module) -> bool:
    """ruff's C408: ``dict()``, ``dict(a=1)``, ``list()``, ``tuple()``."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("dict", "list", "tuple")
            and not node.args
            and (node.func.id == "dict" or not node.keywords)
            and all(k.arg is not None for k in node.keywords)
        ):
            return True
    return False


def noqa_codes(text: str) -> list[str]:
    """The codes ruff reports for the source's own spellings copied into ``text``."""
    tree = ast.parse(text)
    modules, members = _typing_names(tree)

    def typing_name(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return members.get(node.id)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            return node.attr
        return None

    codes: set[str] = set()
    for ann in _annotations(tree):
        for node in ast.walk(ann):
            if isinstance(node, ast.Subscript):
                name = typing_name(node.value)
                if name == "Optional":
                    codes.add("UP045")
                elif name == "Union":
                    codes.add("UP007")
            name = (
                typing_name(node)
                if isinstance(node, (ast.Name, ast.Attribute))
                else None
            )
            if name in _UP006:
                codes.add("UP006")
    if _ImplicitOptional(tree).flags(tree):
        codes.add("RUF013")
    if _literal_call(tree):
        codes.add("C408")
    return sorted(codes)
