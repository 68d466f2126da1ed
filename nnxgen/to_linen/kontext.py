"""Kauldron kontext keys (``x: kontext.Key = "batch.image"`` in an NNX class
body) as fields of the Linen wrapper, where Kauldron looks for them."""

from __future__ import annotations

import typing
from typing import Any

from nnxgen.codegen import exprs
from nnxgen.codegen.names import Names, nnx_bases
from nnxgen.codegen.resolve import lookup, make_context, rewrite
from nnxgen.codegen.spec import FieldSpec, Import


def _is_kontext_key(obj: Any) -> bool:
    """``kontext.Key`` (``Annotated[Any, <kauldron key token>]``) or an alias of it."""
    if typing.get_origin(obj) is not typing.Annotated:
        return False
    return any(
        type(meta).__module__.startswith("kauldron.kontext")
        for meta in typing.get_args(obj)[1:]
    )


def kontext_fields(
    cls: type, wrapped: dict[type, str], imports: set[Import], names: Names
) -> list[FieldSpec]:
    """The kontext-key fields of ``cls`` and its bases (a subclass's wins)."""
    fields: list[FieldSpec] = []
    for klass in reversed(cls.__mro__):
        if klass in nnx_bases() or "__annotations__" not in vars(klass):
            continue
        ctx = make_context(cls, klass, wrapped, set(), names)
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
            chain = exprs.chain(node)
            if not chain:
                continue
            _, obj = lookup(ctx, chain)
            if not _is_kontext_key(obj):
                continue
            what = f"{klass.__qualname__}.{name}"
            annotation = rewrite(ctx, ann_text, annotation=True, what=what)
            default_text = texts.get(name, (None, None))[1]
            default = (
                rewrite(ctx, default_text, annotation=False, what=what)
                if default_text is not None
                else None
            )
            fields = [f for f in fields if f.name != name]
            fields.append(FieldSpec(name, annotation, default))
            imports.update(ctx.imports)
    return fields
