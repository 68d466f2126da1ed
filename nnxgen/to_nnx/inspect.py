"""Inspect a Linen module class and describe its NNX wrapper (:class:`LinenClassSpec`).

The other direction of :mod:`nnxgen.to_linen.inspect`, from the same shared parts
(:mod:`nnxgen.codegen`): the
wrapper's ``__init__`` takes the Linen dataclass fields (less ``parent`` and
``name``) with their annotation and default text as written in the class
bodies that declare them, plus keyword-only ``rngs: nnx.Rngs``; every public
method (``__call__`` first) mirrors its Linen signature, except that an
argument named ``deterministic``, ``train``, ``training`` or
``use_running_average`` becomes ``... | None = None`` and follows the NNX mode
(``nnxgen.runtime._linen``).
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import re
from typing import Any

from nnxgen.codegen import exprs, members, source
from nnxgen.codegen.errors import InspectError
from nnxgen.codegen.members import (
    class_generics,
    clean_doc,
    doc_of,
    free_name,
    owner_of,
    signature_of,
)
from nnxgen.codegen.names import (
    GENERATED_NAMES,
    RUNTIME,
    Names,
    class_import,
    flax_linen,
    flax_nnx,
)
from nnxgen.codegen.params import param
from nnxgen.codegen.resolve import (
    Context,
    annotation_from_object,
    make_context,
    rewrite,
    source_params,
)
from nnxgen.codegen.spec import Import, LinenClassSpec, MethodSpec, ParamSpec

NNX = Import("flax", "nnx")

#: Linen arguments that follow the NNX mode (``nnxgen.runtime._linen.MODE_ARGUMENTS``).
MODE_ARGUMENTS = ("deterministic", "use_running_average", "train", "training")
#: Attributes the generated class itself defines or sets.
_OWN_MEMBERS = frozenset(
    {
        "set_view",
        "to_nnx__module",
        "to_nnx__rngs",
        "deterministic",
        "use_running_average",
    }
)
#: Why a method named like a field was renamed (the comment).
_FIELD_NAME = " (a Linen field's name, kept by the constructor parameter)"


def _base_classes() -> set[type]:
    return set(flax_linen().Module.__mro__)


def _nnx_reserved() -> frozenset[str]:
    return frozenset(dir(flax_nnx().Module)) | _OWN_MEMBERS | GENERATED_NAMES


def _linen_methods(cls: type) -> list[str]:
    """Public methods of a Linen module (``__call__`` first), less ``setup``."""
    return [
        m for m in members.public_methods(cls, bases=_base_classes()) if m != "setup"
    ]


def _field_owner(cls: type, name: str) -> type:
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def _field_texts(ctx: Context, owner: type) -> dict[str, source.SourceParam]:
    if ctx.src is None:
        return {}
    return {
        n: source.SourceParam(n, "POSITIONAL_OR_KEYWORD", a, d)
        for n, a, d in ctx.src.class_annotations(owner.__qualname__)
    }


#: A line that is the signature dataclasses writes into a Linen class's ``__doc__``
#: (``Name(features: 'int' = 4, parent: ... = <..._Sentinel object at 0x7f...>,
#: name: Optional[str] = None)``): text made at run time, never the author's.
_SIGNATURE_LINE = re.compile(
    r"^[ \t]*\w+\(.*\bparent: .*\bname: .*\)[ \t]*$", re.MULTILINE
)


def _class_doc(cls: type) -> str | None:
    """The class docstring less the signature dataclasses writes when the class
    has none, wherever it is: a decorator may add text before it (transformers'
    ``add_start_docstrings``)."""
    doc = vars(cls).get("__doc__")
    if not isinstance(doc, str):
        return None
    try:
        made = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    except (TypeError, ValueError):
        made = None
    if made:
        doc = doc.replace(made, "")
    return clean_doc(_SIGNATURE_LINE.sub("", doc))


def _method_params(
    ctx: Context,
    cls: type,
    mname: str,
    plist: list[inspect.Parameter],
    texts,
) -> tuple[list[ParamSpec], tuple[str, ...]]:
    params: list[ParamSpec] = []
    modes: list[str] = []
    by_keyword = False
    kinds = [p.kind for p in plist]
    for i, p in enumerate(plist):
        spec = param(ctx, cls, mname, p, texts.get(p.name) if texts else None)
        if p.name in MODE_ARGUMENTS and p.kind in (
            p.POSITIONAL_OR_KEYWORD,
            p.KEYWORD_ONLY,
        ):
            later_required = any(
                k is p.POSITIONAL_OR_KEYWORD and q.default is inspect.Parameter.empty
                for k, q in zip(kinds[i + 1 :], plist[i + 1 :], strict=True)
            )
            ann = spec.annotation
            if ann is not None and not exprs.admits_none(ann):
                ann = exprs.or_none(ann)
            spec = dataclasses.replace(
                spec,
                annotation=ann,
                default=None if later_required else "None",
                default_comment=None,
                unhashable_default=False,
                by_keyword=True,
            )
            modes.append(p.name)
            by_keyword = True
        elif by_keyword and p.kind is p.POSITIONAL_OR_KEYWORD:
            spec = dataclasses.replace(spec, by_keyword=True)
        params.append(spec)
    return params, tuple(modes)


def inspect_linen_class(
    cls: Any,
    *,
    target: str,
    wrapper_name: str | None = None,
    wrapped: dict[type, str] | None = None,
    names: Names | None = None,
) -> tuple[LinenClassSpec, set[Import]]:
    """Describe ``cls`` (a ``flax.linen.Module`` subclass) for the renderer."""
    nn = flax_linen()
    if cls is nn.Module:
        raise InspectError(
            f"{target} is flax.linen.Module itself; name a subclass of it"
        )
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise InspectError(
            f"{target} is abstract (unimplemented: {missing}); wrap a concrete subclass"
        )
    if not dataclasses.is_dataclass(cls):
        raise InspectError(
            f"{target}: cannot read the Linen module's fields (not a dataclass); "
            "make it a plain flax.linen.Module subclass"
        )
    name = wrapper_name or cls.__name__
    wrapped = dict(wrapped or {})
    wrapped.setdefault(cls, name)
    names = names or Names(wrapped)
    cls_import, linen_ref = class_import(cls)
    nnx_name, nnx_imps = names.bind("nnx", flax_nnx(), [NNX])
    if nnx_name != "nnx":
        raise InspectError(
            f"{target}: the name 'nnx' is used for something else than flax.nnx in a "
            "signature; generate this target into a separate file"
        )
    imports: set[Import] = {RUNTIME, cls_import, *nnx_imps}

    # Fields: the dataclass __init__ (what Python calls), less parent / name.
    sig = signature_of(cls.__init__, f"{target}.__init__")
    fields: list[ParamSpec] = []
    method_names = set(_linen_methods(cls))
    for p in list(sig.parameters.values())[1:]:
        if p.name in ("parent", "name"):
            continue
        if p.name == "rngs":
            raise InspectError(
                f"{target} has a field named 'rngs', which the NNX wrapper's "
                "constructor takes for nnx.Rngs; rename the field"
            )
        owner = _field_owner(cls, p.name)
        ctx = make_context(cls, owner, wrapped, imports, names)
        text = _field_texts(ctx, owner).get(p.name)
        if p.name in method_names and p.default is getattr(cls, p.name, None):
            # ``features: int`` beside a method ``features`` (inherited, or defined
            # after the annotation): dataclasses takes the function for the field's
            # default. It is no value anyone passes: the field is required.
            p = p.replace(default=inspect.Parameter.empty)
        if p.default is dataclasses._HAS_DEFAULT_FACTORY:  # type: ignore[attr-defined]
            p = p.replace(default=_FACTORY)
            text = dataclasses.replace(text, default=None) if text else None
        # `f: X = None` stays as written: the wrapper passes `f` on to the Linen
        # class, whose field is typed `X` (an `X | None` parameter would be a new
        # type error at that call; the source's own error reappears on this line)
        spec = param(ctx, cls, "__init__", p, text, implicit_optional=False)
        if p.default is _FACTORY:
            spec = dataclasses.replace(
                spec,
                default_comment="a default_factory field: one value made by the "
                "Linen field's factory, shared as a def default is",
            )
        if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD:
            spec = dataclasses.replace(spec, unhashable_default=False)
        fields.append(spec)

    # Methods.
    reserved = _nnx_reserved()
    # A method named like a field (``features(self, x)`` inherited by a module with
    # a ``features: int`` field) is kept under a free name: the constructor
    # parameter keeps the field's. The runtime hands Linen the class's function,
    # which the field shadows on the instance.
    field_names = {f.name for f in fields}
    taken = set(_linen_methods(cls)) | field_names
    methods: list[MethodSpec] = []
    modes: list[tuple[str, ...]] = []
    renamed: list[tuple[str, str]] = []
    for mname in _linen_methods(cls):
        owner = owner_of(cls, mname)
        assert owner is not None
        fn = getattr(cls, mname)
        msig = signature_of(fn, f"{target}.{mname}")
        ctx = make_context(cls, owner, wrapped, imports, names)
        texts, returns_text = source_params(ctx, owner, mname, msig)
        plist = list(msig.parameters.values())
        if plist and plist[0].kind is not plist[0].VAR_POSITIONAL:
            plist = plist[1:]  # self
        mparams, mmodes = _method_params(ctx, cls, mname, plist, texts)
        what = f"{target}.{mname} return annotation"
        if returns_text is not None:
            returns = rewrite(
                ctx, returns_text, annotation=True, what=what, keep_nnx=True
            )
        elif msig.return_annotation is not inspect.Signature.empty:
            returns = annotation_from_object(ctx, msig.return_annotation, what)
        else:
            returns = None
        wname = mname
        if mname != "__call__" and (
            mname in reserved or keyword.iskeyword(mname) or mname in field_names
        ):
            wname = free_name(mname, taken | reserved)
            taken.add(wname)
            clash = mname in field_names and mname not in reserved
            renamed.append((mname, wname + (_FIELD_NAME if clash else "")))
        doc = doc_of(fn)
        raw = (
            bool(doc)
            and ctx.src is not None
            and ctx.src.doc_is_raw(owner.__qualname__, mname)
        )
        methods.append(
            MethodSpec(
                mname, wname, tuple(mparams), returns, doc, False, None, doc_raw=raw
            )
        )
        modes.append(mmodes)

    type_params, generic_base = class_generics(
        make_context(cls, cls, wrapped, imports, names), cls, target
    )
    doc = _class_doc(cls)
    mod = source.module_of(cls)
    cls_src = source.load(mod) if mod else None
    doc_raw = bool(doc) and cls_src is not None and cls_src.doc_is_raw(cls.__qualname__)
    spec = LinenClassSpec(
        name=name,
        target=target,
        linen_ref=linen_ref,
        doc=doc,
        fields=tuple(fields),
        methods=tuple(methods),
        modes=tuple(modes),
        renamed=tuple(renamed),
        doc_raw=doc_raw,
        type_params=type_params,
        generic_base=generic_base,
    )
    return spec, imports


class _Factory:
    """Stands in for a ``default_factory`` field's default (never equal to a source text)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()
