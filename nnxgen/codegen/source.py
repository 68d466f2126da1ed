"""Read a module's source with libcst: its imports, top-level names and functions.

Only what the generator needs: where each name used in a signature comes from
(``import x as y``, ``from a import b as c``, relative imports, imports under
``if TYPE_CHECKING:``), and the exact text of annotations and defaults of a
function defined in a (possibly nested) class.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import os
import sys
import types

import libcst as cst

from nnxgen.codegen.spec import Import


@dataclasses.dataclass(frozen=True)
class SourceParam:
    name: str
    kind: str
    annotation: str | None
    default: str | None


@dataclasses.dataclass(frozen=True)
class SourceFunction:
    params: tuple[SourceParam, ...]
    returns: str | None


@dataclasses.dataclass
class ModuleSource:
    name: str
    tree: cst.Module
    imports: dict[str, list[Import]]  # local name -> statements that bind it
    toplevel: set[str]

    def code(self, node: cst.CSTNode) -> str:
        return self.tree.code_for_node(node)

    @functools.cached_property
    def _toplevel_classes(self) -> dict[str, cst.ClassDef]:
        """Top-level class definitions by name (the last one wins, as at run time)."""
        out: dict[str, cst.ClassDef] = {}
        for stmt in self.tree.body:
            for node in _flatten_blocks(stmt):
                if isinstance(node, cst.ClassDef):
                    out[node.name.value] = node
        return out

    def find_class(self, qualname: str) -> cst.ClassDef | None:
        first, *rest = qualname.split(".")
        node = self._toplevel_classes.get(first)
        if node is None:
            return None
        body: list = (
            list(node.body.body) if isinstance(node.body, cst.IndentedBlock) else []
        )
        for part in rest:
            node = _find_def(body, cst.ClassDef, part)
            if node is None:
                return None
            body = (
                list(node.body.body) if isinstance(node.body, cst.IndentedBlock) else []
            )
        return node

    def find_function(self, class_qualname: str, name: str) -> SourceFunction | None:
        cls = self.find_class(class_qualname)
        if cls is None or not isinstance(cls.body, cst.IndentedBlock):
            return None
        fn = _find_def(list(cls.body.body), cst.FunctionDef, name)
        if fn is None:
            return None
        return self._signature(fn)

    def doc_is_raw(self, class_qualname: str, method: str | None = None) -> bool:
        """Whether the class's (or its method's) docstring is a raw string literal."""
        node: cst.ClassDef | cst.FunctionDef | None = self.find_class(class_qualname)
        if node is not None and method is not None:
            body = node.body.body if isinstance(node.body, cst.IndentedBlock) else []
            node = _find_def(list(body), cst.FunctionDef, method)
        if node is None or not isinstance(node.body, cst.IndentedBlock):
            return False
        body = node.body.body
        if not body or not isinstance(body[0], cst.SimpleStatementLine):
            return False
        first = body[0].body[0]
        if not isinstance(first, cst.Expr):
            return False
        value = first.value
        if isinstance(value, cst.ConcatenatedString):
            value = value.left
        return isinstance(value, cst.SimpleString) and "r" in value.prefix.lower()

    def class_type_params(
        self, class_qualname: str
    ) -> list[tuple[str, str, str | None, str | None]] | None:
        """``(kind, name, bound, default)`` of a PEP 695 class's type parameters
        as written (kind: ``TypeVar``, ``TypeVarTuple`` or ``ParamSpec``), or None."""
        cls = self.find_class(class_qualname)
        tps = getattr(cls, "type_parameters", None)
        if tps is None:
            return None
        out: list[tuple[str, str, str | None, str | None]] = []
        for tp in tps.params:
            param = tp.param
            bound = getattr(param, "bound", None)
            default = getattr(tp, "default", None)
            out.append(
                (
                    type(param).__name__,
                    param.name.value,
                    self.code(bound) if bound is not None else None,
                    self.code(default) if default is not None else None,
                )
            )
        return out

    def class_annotations(
        self, class_qualname: str
    ) -> list[tuple[str, str, str | None]]:
        """``(name, annotation, default)`` of annotated class attributes."""
        cls = self.find_class(class_qualname)
        out: list[tuple[str, str, str | None]] = []
        if cls is None or not isinstance(cls.body, cst.IndentedBlock):
            return out
        for stmt in cls.body.body:
            if not isinstance(stmt, cst.SimpleStatementLine):
                continue
            for small in stmt.body:
                if isinstance(small, cst.AnnAssign) and isinstance(
                    small.target, cst.Name
                ):
                    default = (
                        self.code(small.value) if small.value is not None else None
                    )
                    out.append(
                        (
                            small.target.value,
                            self.code(small.annotation.annotation),
                            default,
                        )
                    )
        return out

    def _signature(self, fn: cst.FunctionDef) -> SourceFunction:
        p = fn.params
        params: list[SourceParam] = []

        def add(param: cst.Param, kind: str) -> None:
            ann = self.code(param.annotation.annotation) if param.annotation else None
            default = self.code(param.default) if param.default is not None else None
            params.append(SourceParam(param.name.value, kind, ann, default))

        for param in p.posonly_params:
            add(param, "POSITIONAL_ONLY")
        for param in p.params:
            add(param, "POSITIONAL_OR_KEYWORD")
        if isinstance(p.star_arg, cst.Param):
            add(p.star_arg, "VAR_POSITIONAL")
        for param in p.kwonly_params:
            add(param, "KEYWORD_ONLY")
        if p.star_kwarg is not None:
            add(p.star_kwarg, "VAR_KEYWORD")
        returns = self.code(fn.returns.annotation) if fn.returns is not None else None
        return SourceFunction(tuple(params), returns)


def _find_def(body: list, kind: type, name: str):
    found = None
    for stmt in body:
        for node in _flatten_blocks(stmt):
            if isinstance(node, kind) and node.name.value == name:
                found = node  # the last definition wins, as at run time
    return found


def _flatten_blocks(stmt):
    """Statements, looking into if/try blocks (conditional definitions)."""
    yield stmt
    blocks = []
    if isinstance(stmt, cst.If):
        blocks.append(stmt.body)
        if stmt.orelse is not None:
            blocks.append(stmt.orelse.body)
    elif isinstance(stmt, cst.Try):
        blocks.append(stmt.body)
        blocks.extend(h.body for h in stmt.handlers)
        if stmt.orelse is not None:
            blocks.append(stmt.orelse.body)
    for block in blocks:
        if isinstance(block, cst.IndentedBlock):
            for inner in block.body:
                yield from _flatten_blocks(inner)
        elif isinstance(block, cst.If):
            yield from _flatten_blocks(block)


def _is_type_checking(test: cst.BaseExpression) -> bool:
    if isinstance(test, cst.Name):
        return test.value == "TYPE_CHECKING"
    if isinstance(test, cst.Attribute):
        return test.attr.value == "TYPE_CHECKING"
    return False


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    raise ValueError(node)


def _resolve_relative(
    module_name: str, is_package: bool, level: int, target: str | None
) -> str:
    package = module_name if is_package else module_name.rpartition(".")[0]
    name = "." * level + (target or "")
    return importlib.util.resolve_name(name, package)


def _collect(
    body, module_name: str, is_package: bool, imports: dict, toplevel: set, tc: bool
) -> None:
    for stmt in body:
        if isinstance(stmt, cst.If):
            inner_tc = tc or _is_type_checking(stmt.test)
            _collect(
                stmt.body.body, module_name, is_package, imports, toplevel, inner_tc
            )
            orelse = stmt.orelse
            while orelse is not None:
                if isinstance(orelse, cst.If):
                    _collect(
                        orelse.body.body, module_name, is_package, imports, toplevel, tc
                    )
                    orelse = orelse.orelse
                else:
                    _collect(
                        orelse.body.body, module_name, is_package, imports, toplevel, tc
                    )
                    orelse = None
            continue
        if isinstance(stmt, cst.Try):
            _collect(stmt.body.body, module_name, is_package, imports, toplevel, tc)
            for h in stmt.handlers:
                _collect(h.body.body, module_name, is_package, imports, toplevel, tc)
            continue
        if isinstance(stmt, (cst.ClassDef, cst.FunctionDef)):
            toplevel.add(stmt.name.value)
            continue
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    mod = _dotted(alias.name)
                    if alias.asname is not None:
                        asname = alias.asname.name.value  # type: ignore[union-attr]
                        imp = Import(mod, None, asname if asname != mod else None, tc)
                        imports.setdefault(asname, []).append(imp)
                    else:
                        imp = Import(mod, None, None, tc)
                        imports.setdefault(mod.split(".")[0], []).append(imp)
            elif isinstance(small, cst.ImportFrom):
                if isinstance(small.names, cst.ImportStar):
                    continue
                level = len(small.relative)
                target = _dotted(small.module) if small.module is not None else None
                mod = (
                    _resolve_relative(module_name, is_package, level, target)
                    if level
                    else target
                )
                for alias in small.names:
                    name = (
                        alias.name.value
                        if isinstance(alias.name, cst.Name)
                        else _dotted(alias.name)
                    )
                    asname = (
                        alias.asname.name.value if alias.asname is not None else None
                    )  # type: ignore[union-attr]
                    local = asname or name
                    imp = Import(
                        mod or "", name, asname if asname != name else None, tc
                    )
                    imports.setdefault(local, []).append(imp)
            elif isinstance(small, (cst.Assign, cst.AnnAssign)):
                targets = (
                    [t.target for t in small.targets]
                    if isinstance(small, cst.Assign)
                    else [small.target]
                )
                for t in targets:
                    if isinstance(t, cst.Name):
                        toplevel.add(t.value)


@functools.cache
def _load_cached(module_name: str, path: str, mtime: float) -> ModuleSource | None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        tree = cst.parse_module(text)
    except cst.ParserSyntaxError:
        return None
    is_package = path.endswith("__init__.py")
    imports: dict[str, list[Import]] = {}
    toplevel: set[str] = set()
    _collect(tree.body, module_name, is_package, imports, toplevel, False)
    return ModuleSource(module_name, tree, imports, toplevel)


def load(module: types.ModuleType) -> ModuleSource | None:
    """Parsed source of ``module``, or None when it has no readable source."""
    try:
        path = inspect.getsourcefile(module)
    except TypeError:
        return None
    if not path:
        return None

    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    return _load_cached(module.__name__, path, mtime)


def module_of(obj) -> types.ModuleType | None:
    name = getattr(obj, "__module__", None)
    return sys.modules.get(name) if name else None
