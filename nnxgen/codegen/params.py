"""One parameter's :class:`~nnxgen.codegen.spec.ParamSpec`: its annotation and
default text as the wrapper writes them. A source default is kept as written
when, re-evaluated from the generated file's imports, it is the signature's
value; otherwise the wrapper reads the value from the class at run time."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from typing import Any

from nnxgen.codegen import exprs, source
from nnxgen.codegen.names import RUNTIME, class_import, flax_nnx, is_linen_class
from nnxgen.codegen.resolve import Context, annotation_from_object, rewrite
from nnxgen.codegen.spec import Import, ParamSpec


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


def _class_annotation(
    ctx: Context, p: inspect.Parameter, text: source.SourceParam | None, what: str
) -> str:
    if text is None or text.annotation is None:
        ctx.imports.add(ctx.names.aliases.any)
        return f"type[{ctx.names.aliases.Any}]"
    ann = rewrite(ctx, text.annotation, annotation=True, what=what, keep_nnx=True)
    node = exprs.parse(ann)
    chain = exprs.chain(node.value if isinstance(node, ast.Subscript) else node)
    if chain and chain[-1] in ("type", "Type", "Callable"):
        return ann  # `Callable[..., M]`, bare `Callable` / `type`: a class fits
    return f"type[{ann}]"


def param(
    ctx: Context,
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
        annotation = rewrite(ctx, text.annotation, annotation=True, what=what)
    else:
        annotation = annotation_from_object(ctx, p.annotation, what)
    default = None
    comment = None
    if p.default is not inspect.Parameter.empty:
        default, comment = _default(ctx, cls, method, p, text, what)
        nnx = flax_nnx()
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


def _fallback_default(ctx: Context, cls: type, method: str, name: str) -> str:
    ctx.imports.add(RUNTIME)
    imp, ref = class_import(cls)
    ctx.imports.add(imp)
    if method == "__init__" and is_linen_class(cls):
        return f'_rt.linen_default({ref}, "{name}")'
    if method == "__init__":
        return f'_rt.nnx_default({ref}, "{name}")'
    return f'_rt.nnx_default({ref}, "{name}", method="{method}")'


def _default(ctx, cls, method, p, text, what) -> tuple[str, str | None]:
    if text is not None and text.default is not None:
        expr_imports: set[Import] = set()
        sub = dataclasses.replace(ctx, imports=expr_imports)
        try:
            rewritten = rewrite(sub, text.default, annotation=False, what=what)
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
    if not is_linen_class(cls):
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
