"""Resolve and rewrite the expressions a wrapper copies from its source
(annotations, defaults): every free name becomes an import the generated file
makes (or an alias of one), NNX module types become their Linen side."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import inspect
import sys
import types
from typing import Any

from nnxgen.codegen import exprs, source
from nnxgen.codegen.errors import InspectError
from nnxgen.codegen.names import (
    Names,
    flax_nnx,
    is_linen_class,
    linen_alias,
    nnx_alias,
    registered_path,
)
from nnxgen.codegen.spec import Import


def _renamed(node: ast.expr, new_root: str) -> ast.expr:
    if isinstance(node, ast.Name):
        return ast.Name(new_root)
    if isinstance(node, ast.Attribute):
        return ast.Attribute(_renamed(node.value, new_root), node.attr)
    return node


@dataclasses.dataclass
class Context:
    """Where the text of one function's signature comes from."""

    module: types.ModuleType
    src: source.ModuleSource | None
    owner: type  # class whose body holds the function
    wrapped: dict[type, str]  # NNX classes wrapped in the same file -> wrapper names
    imports: set[Import]
    names: Names
    #: PEP 695 type parameters in scope (``class Box[T]``): names the wrapper binds too
    type_params: frozenset[str] = frozenset()


def _import_obj(imp: Import) -> Any:
    mod = importlib.import_module(imp.module)
    if imp.name is None:
        return (
            importlib.import_module(imp.module.split(".")[0]) if not imp.asname else mod
        )
    return getattr(mod, imp.name)


def lookup(ctx: Context, parts: list[str]) -> tuple[bool, Any]:
    name = parts[0]
    g = vars(ctx.module)
    found = False
    obj = None
    if name in g:
        obj, found = g[name], True
    elif ctx.src is not None and name in ctx.src.imports:
        try:
            obj, found = _import_obj(ctx.src.imports[name][-1]), True
        except Exception:  # noqa: BLE001 - user code may raise anything here
            return False, None
    elif hasattr(builtins, name):
        obj, found = getattr(builtins, name), True
    if not found:
        return False, None
    for part in parts[1:]:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return True, None
    return True, obj


def _class_scope(ctx: Context, name: str) -> list[str] | None:
    """Qualified path to ``name`` if it is defined in the owner class (or an outer one)."""
    qual = ctx.owner.__qualname__.split(".")
    if "<locals>" in qual:
        return None
    obj: Any = vars(ctx.module).get(qual[0])
    chain = [obj]
    for part in qual[1:]:
        obj = getattr(obj, part, None)
        chain.append(obj)
    for depth in range(len(chain), 0, -1):
        holder = chain[depth - 1]
        if holder is not None and name in vars(holder):
            return qual[:depth]
    return None


def _scope_object(ctx: Context, scope: list[str], name: str) -> Any:
    obj: Any = vars(ctx.module).get(scope[0])
    for part in scope[1:]:
        obj = getattr(obj, part, None)
    return vars(obj).get(name) if obj is not None else None


def _pick_imports(stmts: list[Import], parts: list[str]) -> list[Import]:
    plain = [s for s in stmts if s.name is None and s.asname is None]
    if len(plain) == len(stmts) and plain:
        dotted = ".".join(parts)
        matching = [
            s for s in plain if dotted.startswith(s.module + ".") or dotted == s.module
        ]
        if matching:
            return [max(matching, key=lambda s: len(s.module))]
    return [stmts[-1]]


def _make_resolver(
    ctx: Context, *, annotation: bool, what: str, keep_nnx: bool = False
):
    def resolve(parts: list[str], node: ast.expr) -> ast.expr:
        name = parts[0]
        if name in ctx.type_params:
            return node  # the wrapper declares the same type parameters
        found, obj = lookup(ctx, parts)
        nnx = flax_nnx()
        if (
            annotation
            and not keep_nnx
            and isinstance(obj, type)
            and issubclass(obj, nnx.Module)
        ):
            if obj in ctx.wrapped:
                return ast.Name(ctx.wrapped[obj])
            ctx.imports.add(ctx.names.aliases.linen)
            return ast.Attribute(ast.Name(ctx.names.aliases.nn), "Module")

        def bind(imports: list[Import]) -> ast.expr:
            root = lookup(ctx, [name])[1]
            final, imps = ctx.names.bind(name, root, imports, annotation=annotation)
            ctx.imports.update(imps)
            return node if final == name else _renamed(node, final)

        if ctx.src is not None and name in ctx.src.imports:
            return bind(_pick_imports(ctx.src.imports[name], parts))
        g = vars(ctx.module)
        if (ctx.src is not None and name in ctx.src.toplevel) or name in g:
            if ctx.module.__name__ == "__main__":
                raise InspectError(
                    f"{what} uses {name!r} from __main__; move the model to an importable module"
                )
            if isinstance(g.get(name), types.ModuleType):
                mod = g[name]
                return bind(
                    [Import(mod.__name__, None, name if name != mod.__name__ else None)]
                )
            return bind([Import(ctx.module.__name__, name)])
        scope = _class_scope(ctx, name)
        if (
            scope is not None
            and hasattr(builtins, name)
            and not isinstance(_scope_object(ctx, scope, name), type)
        ):
            # A method named like a builtin (``def slice(self, ...)``) beside an
            # annotation ``idx: slice``: an annotation means the builtin, the way
            # type checkers read it; only a class defined in the class body
            # (a nested ``class slice``) would shadow it.
            scope = None
        if scope is not None:
            outer = vars(ctx.module).get(scope[0])
            alias = (
                linen_alias(scope[0]) if is_linen_class(outer) else nnx_alias(scope[0])
            )
            ctx.imports.add(Import(ctx.module.__name__, scope[0], alias))
            new: ast.expr = ast.Name(alias)
            for part in [*scope[1:], *parts]:
                new = ast.Attribute(new, part)
            return new
        if found and hasattr(builtins, name):
            return node
        raise InspectError(
            f"{what}: cannot resolve the name {name!r} to an import; "
            f"define or import it at module level in {ctx.module.__name__}"
        )

    return resolve


def _make_subscript(ctx: Context, *, keep_nnx: bool):
    """Annotation subscripts that are not ``Generic[...]`` of what they name."""

    def subscript(parts: list[str], node: ast.Subscript, visit):
        _, obj = lookup(ctx, parts)
        if getattr(obj, "__module__", None) == "jaxtyping" or (
            type(obj).__module__ or ""
        ).startswith("jaxtyping"):
            return exprs.DATA_AFTER_FIRST  # Float[Array, "batch dim"]
        nnx = flax_nnx()
        if keep_nnx or not (isinstance(obj, type) and issubclass(obj, nnx.Module)):
            return None
        # An NNX container module (nnx.List[Sub]) holds wrappers on the Linen
        # side: a list / dict of them. Other NNX generics: the module type alone
        # (``nn.Module`` takes no type arguments).
        for container, builtin in ((nnx.List, "list"), (nnx.Dict, "dict")):
            if issubclass(obj, container):
                return ast.Subscript(ast.Name(builtin), visit(node.slice))
        return visit(node.value)

    return subscript


def rewrite(
    ctx: Context, text: str, *, annotation: bool, what: str, keep_nnx: bool = False
) -> str:
    return exprs.rewrite(
        text,
        _make_resolver(ctx, annotation=annotation, what=what, keep_nnx=keep_nnx),
        annotation=annotation,
        subscript=_make_subscript(ctx, keep_nnx=keep_nnx) if annotation else None,
    )


def annotation_from_object(ctx: Context, ann: Any, what: str) -> str:
    if ann is inspect.Parameter.empty:
        ctx.imports.add(ctx.names.aliases.any)
        return ctx.names.aliases.Any
    if isinstance(ann, str):
        return rewrite(ctx, ann, annotation=True, what=what)
    if ann is None:
        return "None"
    if isinstance(ann, type) and ann.__module__ == "builtins":
        return ann.__name__
    if isinstance(ann, type) and "<locals>" not in ann.__qualname__:
        nnx = flax_nnx()
        if issubclass(ann, nnx.Module):
            if ann in ctx.wrapped:
                return ctx.wrapped[ann]
            ctx.imports.add(ctx.names.aliases.linen)
            return f"{ctx.names.aliases.nn}.Module"
        top = ann.__qualname__.split(".")[0]
        ctx.imports.add(Import(ann.__module__, top))
        return ann.__qualname__
    ctx.imports.add(ctx.names.aliases.any)
    return ctx.names.aliases.Any


def make_context(
    cls: type, owner: type, wrapped: dict[type, str], imports: set[Import], names: Names
) -> Context:
    module = source.module_of(owner)
    path = registered_path(owner)
    if path is not None:
        # made by a factory (or by type(), whose __module__ may be the
        # metaclass's): names resolve where the target binds it.
        module = sys.modules.get(path[0], module)
    if module is None:
        raise InspectError(
            f"{owner.__qualname__}: its module {owner.__module__!r} is not imported"
        )
    tparams = frozenset(t.__name__ for t in vars(owner).get("__type_params__", ()))
    return Context(module, source.load(module), owner, wrapped, imports, names, tparams)


def source_params(ctx: Context, owner: type, name: str, sig: inspect.Signature):
    if ctx.src is None:
        return None, None
    fn = ctx.src.find_function(owner.__qualname__, name)
    if fn is None:
        return None, None
    names = [p.name for p in fn.params]
    if names[1:] != list(sig.parameters) and names != list(sig.parameters):
        return None, None  # decorated with a signature-changing wrapper
    return {p.name: p for p in fn.params}, fn.returns
