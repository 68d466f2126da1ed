"""Inspect an NNX module class and describe it as a :class:`~nnxgen.spec.ClassSpec`.

Signatures come from ``inspect`` (what Python will call); annotation and
default *text* comes from the class's own source, read with libcst, so the
generated wrapper shows what the author wrote. Every name such text uses is
resolved to an import the generated file can make.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib
import inspect
import keyword
import re
import types
from typing import Any

from nnxgen import exprs, source
from nnxgen.runtime._spec import rngs_param
from nnxgen.spec import ClassSpec, FieldSpec, Import, MethodSpec, ParamSpec

LINEN = Import("flax.linen", None, "nn")
RUNTIME = Import("nnxgen.runtime", None, "_rt")
DATACLASSES = Import("dataclasses")
ANY = Import("typing", "Any")

#: Where a class that its own ``__qualname__`` does not reach (one made in a
#: factory function, ``Dyn = make(3)``) is bound: set from the target naming it.
_PATHS: dict[type, tuple[str, tuple[str, ...]]] = {}


def register_path(cls: type, module: str, path: str) -> None:
    """Record that ``module``'s attribute ``path`` is ``cls`` (from a target)."""
    if path and class_ref(cls, strict=False) is None:
        _PATHS[cls] = (module, tuple(path.split(".")))


def class_ref(cls: type, *, strict: bool = True) -> tuple[str, tuple[str, ...]] | None:
    """(module, attribute path) that imports ``cls``: its qualified name, or the
    module-level name a factory-made class is bound to."""
    import sys

    qual = tuple(cls.__qualname__.split("."))
    mod = sys.modules.get(cls.__module__)
    if "<locals>" not in qual and mod is not None:
        obj: Any = mod
        for part in qual:
            obj = getattr(obj, part, None)
        if obj is cls:
            return cls.__module__, qual
    if cls in _PATHS:
        return _PATHS[cls]
    if mod is not None:
        for name, obj in vars(mod).items():
            if obj is cls and not name.startswith("_"):
                return cls.__module__, (name,)
    if not strict:
        return None
    raise InspectError(
        f"{cls.__module__}.{cls.__qualname__} is not reachable by an import; "
        "bind it to a module-level name and name that in the target"
    )


def class_import(cls: type) -> tuple[Import, str]:
    """The import of ``cls`` under its ``_Nnx`` alias (``_Linen`` for a Linen
    module class), and the expression naming it."""
    module, path = class_ref(cls)  # type: ignore[misc]
    alias = linen_alias(path[0]) if _is_linen(cls) else nnx_alias(path[0])
    return Import(module, path[0], alias), ".".join([alias, *path[1:]])


def _is_linen(cls: Any) -> bool:
    import flax.linen

    return isinstance(cls, type) and issubclass(cls, flax.linen.Module)


class Aliases:
    """Names the generated file binds for its own use (``nn``, ``Any``,
    ``dataclasses``): private aliases where a class body binds the plain name
    (a field called ``nn``, as PyG-style graph layers have)."""

    def __init__(self, body_names: set[str] = frozenset()):  # type: ignore[assignment]
        def pick(name: str) -> str:
            alias = name
            while alias in body_names:
                alias = "_" + alias
            return alias

        self.nn = pick("nn")
        self.Any = pick("Any")
        self.dataclasses = pick("dataclasses")

    @property
    def linen(self) -> Import:
        return Import("flax.linen", None, self.nn)

    @property
    def any(self) -> Import:
        return Import("typing", "Any", None if self.Any == "Any" else self.Any)

    @property
    def dataclasses_import(self) -> Import:
        d = self.dataclasses
        return Import("dataclasses", None, None if d == "dataclasses" else d)

    def as_tuple(self) -> tuple[tuple[str, str], ...]:
        pairs = (("nn", self.nn), ("Any", self.Any), ("dataclasses", self.dataclasses))
        return tuple((a, b) for a, b in pairs if a != b)


class InspectError(ValueError):
    """The class cannot be wrapped; the message names the thing and the fix."""


def _nnx():
    from flax import nnx

    return nnx


def _linen_reserved() -> frozenset[str]:
    import flax.linen as nn

    return frozenset(dir(nn.Module)) | {"name", "parent", "scope", "variables"}


#: Names the generated class body itself uses and cannot alias; a field named
#: like them is renamed. (``nn``, ``Any`` and ``dataclasses`` are aliased instead.)
GENERATED_NAMES = frozenset({"_rt"})


def constructor_names(cls: type) -> set[str]:
    """Parameter names of ``cls.__init__`` (the wrapper's field names, before renaming)."""
    try:
        return set(list(inspect.signature(cls.__init__).parameters)[1:])
    except (TypeError, ValueError):
        return set()


def nnx_alias(cls_name: str) -> str:
    return f"_Nnx{cls_name}"


def linen_alias(cls_name: str) -> str:
    return f"_Linen{cls_name}"


class Names:
    """Names bound at the top of one generated file, and to what.

    When two signatures use one name for different objects (``default_kernel_init``
    of flax's linear and recurrent modules), the later one is imported under an
    alias and its expressions are rewritten to use it.
    """

    def __init__(self, wrappers: dict[type, str], fields: set[str] = frozenset()):
        import typing

        import flax.linen

        self.aliases = Aliases(set(fields))
        a = self.aliases
        self.bound: dict[str, tuple[object, frozenset[Import]]] = {}
        for cls, name in wrappers.items():
            self.bound[name] = (("wrapper", cls), frozenset())
            imp, ref = class_import(cls)
            if "." not in ref:
                self.bound[ref] = (cls, frozenset({imp}))
        self.bound[a.nn] = (flax.linen, frozenset({a.linen}))
        self.bound["_rt"] = (("runtime",), frozenset({RUNTIME}))
        self.bound[a.dataclasses] = (dataclasses, frozenset({a.dataclasses_import}))
        self.bound[a.Any] = (typing.Any, frozenset({a.any}))
        self.bound["TYPE_CHECKING"] = (typing.TYPE_CHECKING, frozenset())
        # Constructor parameters become class-body names: an import of the same
        # name would be shadowed for the rest of the class body, so it is aliased.
        for name in fields:
            self.bound.setdefault(name, (("field", name), frozenset()))

    def bind(
        self, name: str, obj: object, imports: list[Import], *, annotation: bool = False
    ) -> tuple[str, list[Import]]:
        """(name to use, imports to add) for binding ``name`` to ``obj``.

        Annotations are strings resolved in module globals (postponed
        evaluation), so a field of the same name does not shadow them there.
        """
        key = frozenset(imports)
        cur = self.bound.get(name)
        if annotation and cur is not None and cur[0] == ("field", name):
            return name, imports
        if cur is None:
            self.bound[name] = (obj, key)
            return name, imports
        if (obj is not None and cur[0] is obj) or cur[1] == key:
            return name, imports
        for alias, (o, k) in self.bound.items():
            if alias != name and ((obj is not None and o is obj) or k == key):
                return alias, list(k)
        if len(imports) != 1 or (
            imports[0].name is None
            and imports[0].asname is None
            and "." in imports[0].module
        ):
            raise InspectError(
                f"the name {name!r} is used for different things (a constructor "
                "parameter or another signature's import); rename one, or generate "
                "these targets into separate files"
            )
        imp = imports[0]
        base = f"{imp.module.split('.')[-1]}_{name}"
        alias, n = base, 1
        while alias in self.bound:
            n += 1
            alias = f"{base}{n}"
        new = dataclasses.replace(imp, asname=alias)
        self.bound[alias] = (obj, frozenset({new}))
        return alias, [new]


def _renamed(node: ast.expr, new_root: str) -> ast.expr:
    if isinstance(node, ast.Name):
        return ast.Name(new_root)
    if isinstance(node, ast.Attribute):
        return ast.Attribute(_renamed(node.value, new_root), node.attr)
    return node


@dataclasses.dataclass
class _Context:
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


def _lookup(ctx: _Context, parts: list[str]) -> tuple[bool, Any]:
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


def _class_scope(ctx: _Context, name: str) -> list[str] | None:
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


def _scope_object(ctx: _Context, scope: list[str], name: str) -> Any:
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
    ctx: _Context, *, annotation: bool, what: str, keep_nnx: bool = False
):
    def resolve(parts: list[str], node: ast.expr) -> ast.expr:
        name = parts[0]
        if name in ctx.type_params:
            return node  # the wrapper declares the same type parameters
        found, obj = _lookup(ctx, parts)
        nnx = _nnx()
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
            root = _lookup(ctx, [name])[1]
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
            alias = linen_alias(scope[0]) if _is_linen(outer) else nnx_alias(scope[0])
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


def _make_subscript(ctx: _Context, *, keep_nnx: bool):
    """Annotation subscripts that are not ``Generic[...]`` of what they name."""

    def subscript(parts: list[str], node: ast.Subscript, visit):
        _, obj = _lookup(ctx, parts)
        if getattr(obj, "__module__", None) == "jaxtyping" or (
            type(obj).__module__ or ""
        ).startswith("jaxtyping"):
            return exprs.DATA_AFTER_FIRST  # Float[Array, "batch dim"]
        nnx = _nnx()
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


def _rewrite(
    ctx: _Context, text: str, *, annotation: bool, what: str, keep_nnx: bool = False
) -> str:
    return exprs.rewrite(
        text,
        _make_resolver(ctx, annotation=annotation, what=what, keep_nnx=keep_nnx),
        annotation=annotation,
        subscript=_make_subscript(ctx, keep_nnx=keep_nnx) if annotation else None,
    )


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        r = a == b
        if isinstance(r, bool):
            return r
        # numpy's bool (``np.bool_``, named ``bool`` in numpy 2) or a 0-d boolean
        # array: ``np.log(np.exp(1) - 1)`` re-evaluated equals the signature's value.
        if getattr(r, "shape", None) == () and str(getattr(r, "dtype", "")) == "bool":
            return bool(r)
        return False
    except Exception:  # noqa: BLE001 - user code may raise anything here
        return False


def _evaluate(text: str, imports: set[Import]) -> Any:
    ns: dict[str, Any] = {}
    for imp in sorted(imports, key=Import.sort_key):
        if imp.type_checking:
            continue
        exec(imp.statement(), ns)  # noqa: S102 - statements we built from source imports
    return eval(text, ns)


def _annotation_from_object(ctx: _Context, ann: Any, what: str) -> str:
    if ann is inspect.Parameter.empty:
        ctx.imports.add(ctx.names.aliases.any)
        return ctx.names.aliases.Any
    if isinstance(ann, str):
        return _rewrite(ctx, ann, annotation=True, what=what)
    if ann is None:
        return "None"
    if isinstance(ann, type) and ann.__module__ == "builtins":
        return ann.__name__
    if isinstance(ann, type) and "<locals>" not in ann.__qualname__:
        nnx = _nnx()
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


def _class_annotation(
    ctx: _Context, p: inspect.Parameter, text: source.SourceParam | None, what: str
) -> str:
    if text is None or text.annotation is None:
        ctx.imports.add(ctx.names.aliases.any)
        return f"type[{ctx.names.aliases.Any}]"
    ann = _rewrite(ctx, text.annotation, annotation=True, what=what, keep_nnx=True)
    node = exprs.parse(ann)
    chain = exprs._chain(node.value if isinstance(node, ast.Subscript) else node)
    if chain and chain[-1] in ("type", "Type", "Callable"):
        return ann  # `Callable[..., M]`, bare `Callable` / `type`: a class fits
    return f"type[{ann}]"


def _param(
    ctx: _Context,
    cls: type,
    method: str,
    p: inspect.Parameter,
    text: source.SourceParam | None,
    *,
    implicit_optional: bool = True,
) -> ParamSpec:
    """The spec of one parameter. ``implicit_optional``: write ``x: T = None`` as
    ``x: T | None = None`` (off where the wrapper passes the value on to a typed
    call: the Linen class's own constructor)."""
    what = f"{cls.__qualname__}.{method} parameter {p.name!r}"
    if text is not None and text.annotation is not None:
        annotation = _rewrite(ctx, text.annotation, annotation=True, what=what)
    else:
        annotation = _annotation_from_object(ctx, p.annotation, what)
    default = None
    comment = None
    if p.default is not inspect.Parameter.empty:
        default, comment = _default(ctx, cls, method, p, text, what)
        nnx = _nnx()
        if isinstance(p.default, type) and issubclass(p.default, nnx.Module):
            # The default is an NNX *class* (a layer factory), not a module the
            # Linen side passes a wrapper for: keep the NNX types, as a class.
            annotation = _class_annotation(ctx, p, text, what)
        if (
            implicit_optional
            and p.default is None
            and not exprs.admits_none(annotation)
        ):
            # `x: int = None`, an implicit Optional (no longer allowed by PEP
            # 484): written explicitly, so that type checkers accept the wrapper.
            annotation = exprs.or_none(annotation)
    unhashable = default is not None and type(p.default).__hash__ is None
    return ParamSpec(
        p.name,
        p.kind.name,
        annotation,
        default,
        comment,
        field=p.name,
        unhashable_default=unhashable,
    )


def _fallback_default(ctx: _Context, cls: type, method: str, name: str) -> str:
    ctx.imports.add(RUNTIME)
    imp, ref = class_import(cls)
    ctx.imports.add(imp)
    if method == "__init__" and _is_linen(cls):
        return f'_rt.linen_default({ref}, "{name}")'
    if method == "__init__":
        return f'_rt.nnx_default({ref}, "{name}")'
    return f'_rt.nnx_default({ref}, "{name}", method="{method}")'


def _default(ctx, cls, method, p, text, what) -> tuple[str, str | None]:
    if text is not None and text.default is not None:
        expr_imports: set[Import] = set()
        sub = dataclasses.replace(ctx, imports=expr_imports)
        try:
            rewritten = _rewrite(sub, text.default, annotation=False, what=what)
            value = _evaluate(rewritten, expr_imports)
        except Exception:  # noqa: BLE001 - user code may raise anything here
            rewritten, value = None, _MISSING
        if rewritten is not None and _same(value, p.default):
            ctx.imports.update(expr_imports)
            return rewritten, None
        one_line = " ".join(text.default.split())
        return (
            _fallback_default(ctx, cls, method, p.name),
            (
                f"source default `{one_line}` is not importable as written; "
                f"the value is taken from the {_origin(cls, method)}"
            ),
        )
    simple = _literal(p.default)
    if simple is not None:
        return simple, None
    return (
        _fallback_default(ctx, cls, method, p.name),
        f"no source available; the value is taken from the {_origin(cls, method)}",
    )


def _origin(cls: type, method: str) -> str:
    if not _is_linen(cls):
        return "NNX signature"
    return "Linen field" if method == "__init__" else "Linen signature"


_MISSING = object()


def _literal(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        try:
            text = repr(value)
            if ast.literal_eval(text) == value and text not in ("nan", "inf", "-inf"):
                return exprs.unparse(ast.parse(text, mode="eval").body)
        except (ValueError, SyntaxError):
            return None
    return None


def _signature(fn: Any, what: str) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as err:
        raise InspectError(f"{what}: cannot read its signature ({err})") from None


def _owner(cls: type, name: str) -> type | None:
    for k in cls.__mro__:
        if name in vars(k):
            return k
    return None


def _context(
    cls: type, owner: type, wrapped: dict[type, str], imports: set[Import], names: Names
) -> _Context:
    module = source.module_of(owner)
    if owner in _PATHS:
        # made by a factory (or by type(), whose __module__ may be the
        # metaclass's): names resolve where the target binds it.
        import sys

        module = sys.modules.get(_PATHS[owner][0], module)
    if module is None:
        raise InspectError(
            f"{owner.__qualname__}: its module {owner.__module__!r} is not imported"
        )
    tparams = frozenset(t.__name__ for t in vars(owner).get("__type_params__", ()))
    return _Context(
        module, source.load(module), owner, wrapped, imports, names, tparams
    )


def _source_params(ctx: _Context, owner: type, name: str, sig: inspect.Signature):
    if ctx.src is None:
        return None, None
    fn = ctx.src.find_function(owner.__qualname__, name)
    if fn is None:
        return None, None
    names = [p.name for p in fn.params]
    if names[1:] != list(sig.parameters) and names != list(sig.parameters):
        return None, None  # decorated with a signature-changing wrapper
    return {p.name: p for p in fn.params}, fn.returns


def _base_classes() -> set[type]:
    nnx = _nnx()
    return set(nnx.Module.__mro__)


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
    bases = _base_classes() if bases is None else bases
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
            owner = _owner(cls, name)
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


def _doc(obj: Any) -> str | None:
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


def _is_kontext_key(obj: Any) -> bool:
    """``kontext.Key`` (``Annotated[Any, <kauldron key token>]``) or an alias of it."""
    import typing

    if typing.get_origin(obj) is not typing.Annotated:
        return False
    return any(
        type(meta).__module__.startswith("kauldron.kontext")
        for meta in typing.get_args(obj)[1:]
    )


#: Why a member that is not one of Linen's own names was renamed (the comment).
_OWN_NAME = " (a name the generated file itself uses)"
#: Why a method named like a constructor parameter was renamed (the comment): the
#: field keeps the name, the user's constructor API.
_PARAM_NAME = " (a constructor parameter's name, kept by the field)"


def _free_name(name: str, taken: set[str]) -> str:
    """``name`` with as many trailing underscores as it takes to be free."""
    name += "_"
    while name in taken:
        name += "_"
    return name


def _kontext_fields(
    cls: type, wrapped: dict[type, str], imports: set[Import], names: Names
) -> list[FieldSpec]:
    fields: list[FieldSpec] = []
    for klass in reversed(cls.__mro__):
        if klass in _base_classes() or "__annotations__" not in vars(klass):
            continue
        ctx = _context(cls, klass, wrapped, set(), names)
        texts = {}
        if ctx.src is not None:
            texts = {
                n: (a, d) for n, a, d in ctx.src.class_annotations(klass.__qualname__)
            }
        for name, ann in vars(klass)["__annotations__"].items():
            ann_text = texts.get(name, (ann if isinstance(ann, str) else None, None))[0]
            if ann_text is None:
                continue
            try:
                node = exprs.parse(ann_text)
            except exprs.ExprError:
                continue
            chain = exprs._chain(node)
            if not chain:
                continue
            _, obj = _lookup(ctx, chain)
            if not _is_kontext_key(obj):
                continue
            what = f"{klass.__qualname__}.{name}"
            annotation = _rewrite(ctx, ann_text, annotation=True, what=what)
            default_text = texts.get(name, (None, None))[1]
            default = (
                _rewrite(ctx, default_text, annotation=False, what=what)
                if default_text is not None
                else None
            )
            fields = [f for f in fields if f.name != name]
            fields.append(FieldSpec(name, annotation, default))
            imports.update(ctx.imports)
    return fields


def inspect_class(
    cls: Any,
    *,
    target: str,
    wrapper_name: str | None = None,
    wrapped: dict[type, str] | None = None,
    names: Names | None = None,
) -> tuple[ClassSpec, set[Import]]:
    """Describe ``cls`` (an ``nnx.Module`` subclass) for the renderer."""
    nnx = _nnx()
    if not isinstance(cls, type) or not issubclass(cls, nnx.Module):
        kind = type(cls).__name__ if not isinstance(cls, type) else "class"
        raise InspectError(
            f"{target} is a {kind}, not a flax.nnx.Module or flax.linen.Module "
            "subclass; point nnxgen at an NNX or Linen module class"
        )
    if cls is nnx.Module:
        raise InspectError(f"{target} is flax.nnx.Module itself; name a subclass of it")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise InspectError(
            f"{target} is abstract (unimplemented: {missing}); wrap a concrete subclass"
        )
    name = wrapper_name or cls.__name__
    wrapped = dict(wrapped or {})
    wrapped.setdefault(cls, name)
    names = names or Names(wrapped, constructor_names(cls) - {"rngs"})
    cls_import, nnx_ref = class_import(cls)
    imports: set[Import] = {names.aliases.linen, RUNTIME, cls_import}
    reserved = _linen_reserved() | GENERATED_NAMES
    # Names of the wrapper's members (fields, methods): a renamed member must not
    # collide with another one.
    members = {m for m in public_methods(cls) if m not in reserved}

    # Constructor.
    init_owner = _owner(cls, "__init__")
    params: list[ParamSpec] = []
    takes_rngs: bool | str = False
    renamed: list[tuple[str, str]] = []
    if init_owner is not None and init_owner not in _base_classes():
        sig = _signature(cls.__init__, f"{target}.__init__")
        ctx = _context(cls, init_owner, wrapped, imports, names)
        texts, _ = _source_params(ctx, init_owner, "__init__", sig)
        plist = list(sig.parameters.values())[1:]
        rngs_name = _rngs_param(plist)
        members |= {p.name for p in plist if p.name != rngs_name} - reserved
        for p in plist:
            if p.name == rngs_name:
                # filled by the runtime from the Linen streams; a parameter of
                # another name annotated nnx.Rngs (``rng: nnx.Rngs``) too
                takes_rngs = True if rngs_name == "rngs" else rngs_name
                continue
            spec = _param(
                ctx,
                cls,
                "__init__",
                p,
                texts.get(p.name) if texts else None,
            )
            field = p.name
            if (
                field in reserved
                or keyword.iskeyword(field)
                or field.startswith("_Nnx")
            ):
                field = _free_name(field, members | set(sig.parameters) | reserved)
                members.add(field)
                why = "" if p.name in _linen_reserved() else _OWN_NAME
                renamed.append((p.name, field + why))
            params.append(dataclasses.replace(spec, field=field))

    # Methods.
    methods: list[MethodSpec] = []
    # A method named like a constructor parameter (``features(self, x)`` and
    # ``__init__(self, features)``) is kept under a free name: the field keeps the
    # parameter's. The runtime runs the NNX class's method even where the instance
    # attribute set from the constructor shadows it.
    param_names = {p.name for p in params}
    for mname in public_methods(cls):
        owner = _owner(cls, mname)
        assert owner is not None
        fn = getattr(cls, mname)
        sig = _signature(fn, f"{target}.{mname}")
        ctx = _context(cls, owner, wrapped, imports, names)
        texts, returns_text = _source_params(ctx, owner, mname, sig)
        plist = list(sig.parameters.values())
        if plist and plist[0].kind is not plist[0].VAR_POSITIONAL:
            plist = plist[1:]  # self
        mparams = []
        takes = key_rngs = False
        for p in plist:
            if p.name == "rngs":
                # filled by the runtime: an nnx.Rngs, or a PRNG key where the
                # annotation says so (``rngs: jax.Array``; see _is_key_annotation)
                takes = True
                key_rngs = _is_key_annotation(p.annotation)
                continue
            mp = _param(ctx, cls, mname, p, texts.get(p.name) if texts else None)
            if takes and p.kind is p.POSITIONAL_OR_KEYWORD:
                mp = dataclasses.replace(mp, by_keyword=True)
            mparams.append(mp)
        what = f"{target}.{mname} return annotation"
        if returns_text is not None:
            returns = _rewrite(ctx, returns_text, annotation=True, what=what)
        elif sig.return_annotation is not inspect.Signature.empty:
            returns = _annotation_from_object(ctx, sig.return_annotation, what)
        else:
            returns = None
        wname = mname
        if mname != "__call__" and (mname in reserved or mname in param_names):
            wname = _free_name(mname, members | reserved)
            members.add(wname)
            if mname in _linen_reserved():
                why = ""
            elif mname in reserved:
                why = _OWN_NAME
            else:
                why = _PARAM_NAME
            renamed.append((mname, wname + why))
        train = "train" if "train" in sig.parameters else None
        doc = _doc(fn)
        raw = (
            bool(doc)
            and ctx.src is not None
            and ctx.src.doc_is_raw(owner.__qualname__, mname)
        )
        methods.append(
            MethodSpec(
                mname,
                wname,
                tuple(mparams),
                returns,
                doc,
                takes,
                train,
                doc_raw=raw,
                key_rngs=key_rngs,
                paramspec=takes_paramspec(mparams),
            )
        )

    extra = _kontext_fields(cls, wrapped, imports, names)
    type_params, generic_base = class_generics(
        _context(cls, cls, wrapped, imports, names), cls, target
    )
    doc = _doc(cls)
    cls_src = source.load(source.module_of(cls)) if source.module_of(cls) else None
    doc_raw = bool(doc) and cls_src is not None and cls_src.doc_is_raw(cls.__qualname__)
    spec = ClassSpec(
        name=name,
        target=target,
        nnx_ref=nnx_ref,
        doc=doc,
        params=tuple(params),
        takes_rngs=takes_rngs,
        methods=tuple(methods),
        extra_fields=tuple(extra),
        renamed=tuple(renamed),
        doc_raw=doc_raw,
        type_params=type_params,
        generic_base=generic_base,
    )
    return spec, imports


def class_generics(ctx: _Context, cls: type, target: str) -> tuple[str, str]:
    """(PEP 695 type parameters, ``Generic[...]`` base) the wrapper of a generic
    ``cls`` declares, so that annotations using its type variables keep their
    meaning: ``class Box[T](nnx.Module)`` -> ``("[T]", "")``,
    ``class Agent(nnx.Module, Generic[TObs, TAct])`` -> ``("", "Generic[TObs, TAct]")``
    (the type variables imported the way the source imports them)."""
    import typing

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
                text += ": " + _rewrite(ctx, bound, annotation=True, what=what)
            if default is not None:
                text += " = " + _rewrite(ctx, default, annotation=True, what=what)
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
        text = _rewrite(ctx, name, annotation=True, what=what)
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
                    chain = exprs._chain(exprs.parse(p.annotation))
                except exprs.ExprError:
                    return False
                return bool(chain) and len(chain) > 1 and chain[-1] == attr
        return False

    return annotated("VAR_POSITIONAL", "args") and annotated("VAR_KEYWORD", "kwargs")


def _rngs_param(params: list[inspect.Parameter]) -> str | None:
    """The constructor parameter the runtime fills with ``nnx.Rngs`` (see
    :func:`nnxgen.runtime._spec.rngs_param`, the rule both sides share)."""
    return rngs_param(params)


def _is_key_annotation(annotation: Any) -> bool:
    """Whether a method's ``rngs`` parameter is annotated as a PRNG key.

    Not a key (an ``nnx.Rngs``, as before): no annotation, ``Any``, or one
    that names ``Rngs`` / ``RngStream`` anywhere (``nnx.Rngs``,
    ``nnx.Rngs | None``, a subclass such as ``MyRngs``; as an object or as the
    text ``from __future__ import annotations`` leaves). Anything else is a key:
    ``jax.Array``, ``jax.typing.ArrayLike``, ``PRNGKey``, jaxtyping's
    ``PRNGKeyArray`` / ``Key[Array, ""]``, ``jax.Array | None``...
    """
    import re
    import types
    import typing

    from flax import nnx

    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return False
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        names = [
            n.rsplit(".", 1)[-1] for n in re.findall(r"[A-Za-z_][\w.]*", annotation)
        ]
        return bool(names) and not any(
            n.endswith("Rngs") or n in ("RngStream", "Any") for n in names
        )
    if isinstance(annotation, type):
        return not (
            issubclass(annotation, (nnx.Rngs, nnx.RngStream))
            or annotation.__name__.endswith("Rngs")
        )
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_key_annotation(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return all(_is_key_annotation(a) for a in members)
    return True
