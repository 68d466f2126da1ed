"""Keep copied annotations and defaults verbatim and the generated file lint-clean.

Annotations and defaults are copied exactly as the NNX author wrote them, so
they may use ``Optional[X]``, ``Union[...]`` or ``List[...]`` (ruff's pyupgrade
rules UP045/UP007/UP006, and UP035 for ``from typing import List``) or
``dict()`` (C408). (An implicit Optional,
``x: int = None``, is written out by the inspector instead: type checkers
reject it too.) nnxgen does not rewrite them; it records exactly the rules
they trigger in a file-level ``# ruff: noqa:`` line (an unused code would itself
be flagged, RUF100, so the list is computed the way ruff decides, never fixed).
Imports of ABCs through ``typing`` are taken from ``collections.abc`` instead
(the same annotation text, the non-deprecated source).
"""

from __future__ import annotations

import ast
import dataclasses

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


def _annotations_and_c408(tree: ast.Module) -> tuple[list[ast.expr], bool]:
    """Every annotation in ``tree``, and whether it has a call ruff's C408 flags
    (``dict()``, ``dict(a=1)``, ``list()``, ``tuple()``): one walk."""
    annotations: list[ast.expr] = []
    c408 = False
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None and arg.annotation is not None:
                    annotations.append(arg.annotation)
            if node.returns is not None:
                annotations.append(node.returns)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("dict", "list", "tuple")
            and not node.args
            and (node.func.id == "dict" or not node.keywords)
            and all(k.arg is not None for k in node.keywords)
        ):
            c408 = True
    return annotations, c408


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
    annotations, c408 = _annotations_and_c408(tree)
    for ann in annotations:
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
    if c408:
        codes.add("C408")
    if any(
        isinstance(node, ast.ImportFrom)
        and node.module == "typing"
        and any(a.name in _UP006 for a in node.names)
        for node in tree.body
    ):
        codes.add("UP035")  # ``from typing import Tuple``: a deprecated import
    codes |= _string_annotation_codes(tree, annotations)
    return sorted(codes)


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level (imports, classes, functions, assignments)."""
    import builtins

    names = set(dir(builtins))

    def visit(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    names.add(a.asname or a.name.split(".")[0])
            elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = (
                    node.targets if isinstance(node, ast.Assign) else [node.target]
                )
                for t in targets:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)

    visit(tree.body)
    return names


def _string_annotation_codes(tree: ast.Module, annotations: list[ast.expr]) -> set[str]:
    """Strings kept in annotations as data (jaxtyping's ``Float[Array, "batch"]``):
    ruff reads every string in an annotation (but ``Literal[...]`` and
    ``Annotated`` metadata) as a forward reference. One that parses is a quoted
    annotation (UP037, the file has ``from __future__ import annotations``), and
    its names that the module does not bind are undefined (F821); one that does
    not parse ruff leaves alone."""
    codes: set[str] = set()
    bound: set[str] | None = None

    def last_name(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        return None

    def visit(node: ast.expr) -> None:
        nonlocal bound
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return
            codes.add("UP037")
            if bound is None:
                bound = _module_names(tree)
            if any(
                isinstance(n, ast.Name) and n.id not in bound for n in ast.walk(inner)
            ):
                codes.add("F821")
            return
        if isinstance(node, ast.Subscript):
            name = last_name(node.value)
            visit(node.value)
            if name == "Literal":
                return
            elts = (
                node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            )
            if name == "Annotated":
                elts = elts[:1]
            for e in elts:
                visit(e)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                visit(child)

    for ann in annotations:
        visit(ann)
    return codes
