"""Inspect an NNX module class and describe its Linen wrapper as a
:class:`~nnxgen.codegen.spec.ClassSpec`.

Signatures come from ``inspect`` (what Python will call); annotation and
default *text* comes from the class's own source, read with libcst, so the
generated wrapper shows what the author wrote. Every name such text uses is
resolved to an import the generated file can make (:mod:`nnxgen.codegen.resolve`).
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import re
import types
import typing
from typing import Any

from nnxgen.codegen import source
from nnxgen.codegen.errors import InspectError
from nnxgen.codegen.members import (
    class_generics,
    doc_of,
    free_name,
    owner_of,
    public_methods,
    signature_of,
    takes_paramspec,
)
from nnxgen.codegen.names import (
    GENERATED_NAMES,
    RUNTIME,
    Names,
    class_import,
    constructor_names,
    flax_linen,
    flax_nnx,
    nnx_bases,
)
from nnxgen.codegen.params import param
from nnxgen.codegen.resolve import (
    annotation_from_object,
    make_context,
    rewrite,
    source_params,
)
from nnxgen.codegen.spec import ClassSpec, Import, MethodSpec, ParamSpec
from nnxgen.runtime._linen_wrapper.spec import rngs_param
from nnxgen.to_linen.kontext import kontext_fields


def _linen_reserved() -> frozenset[str]:
    return frozenset(dir(flax_linen().Module)) | {
        "name",
        "parent",
        "scope",
        "variables",
    }


#: Why a member that is not one of Linen's own names was renamed (the comment).
_OWN_NAME = " (a name the generated file itself uses)"
#: Why a method named like a constructor parameter was renamed (the comment): the
#: field keeps the name, the user's constructor API.
_PARAM_NAME = " (a constructor parameter's name, kept by the field)"


def inspect_class(
    cls: Any,
    *,
    target: str,
    wrapper_name: str | None = None,
    wrapped: dict[type, str] | None = None,
    names: Names | None = None,
) -> tuple[ClassSpec, set[Import]]:
    """Describe ``cls`` (an ``nnx.Module`` subclass) for the renderer."""
    nnx = flax_nnx()
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
    init_owner = owner_of(cls, "__init__")
    params: list[ParamSpec] = []
    takes_rngs: bool | str = False
    renamed: list[tuple[str, str]] = []
    if init_owner is not None and init_owner not in nnx_bases():
        sig = signature_of(cls.__init__, f"{target}.__init__")
        ctx = make_context(cls, init_owner, wrapped, imports, names)
        texts, _ = source_params(ctx, init_owner, "__init__", sig)
        plist = list(sig.parameters.values())[1:]
        rngs_name = _rngs_param(plist)
        members |= {p.name for p in plist if p.name != rngs_name} - reserved
        for p in plist:
            if p.name == rngs_name:
                # filled by the runtime from the Linen streams; a parameter of
                # another name annotated nnx.Rngs (``rng: nnx.Rngs``) too
                takes_rngs = True if rngs_name == "rngs" else rngs_name
                continue
            spec = param(
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
                field = free_name(field, members | set(sig.parameters) | reserved)
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
        owner = owner_of(cls, mname)
        assert owner is not None
        fn = getattr(cls, mname)
        sig = signature_of(fn, f"{target}.{mname}")
        ctx = make_context(cls, owner, wrapped, imports, names)
        texts, returns_text = source_params(ctx, owner, mname, sig)
        plist = list(sig.parameters.values())
        if plist and plist[0].kind is not plist[0].VAR_POSITIONAL:
            plist = plist[1:]  # self
        mparams = []
        takes = key_rngs = False
        for p in plist:
            if p.name == "rngs":
                # filled by the runtime: an nnx.Rngs, or a PRNG key where the
                # annotation says so (``rngs: jax.Array``; see is_key_annotation)
                takes = True
                key_rngs = is_key_annotation(p.annotation)
                continue
            mp = param(ctx, cls, mname, p, texts.get(p.name) if texts else None)
            if takes and p.kind is p.POSITIONAL_OR_KEYWORD:
                mp = dataclasses.replace(mp, by_keyword=True)
            mparams.append(mp)
        what = f"{target}.{mname} return annotation"
        if returns_text is not None:
            returns = rewrite(ctx, returns_text, annotation=True, what=what)
        elif sig.return_annotation is not inspect.Signature.empty:
            returns = annotation_from_object(ctx, sig.return_annotation, what)
        else:
            returns = None
        wname = mname
        if mname != "__call__" and (mname in reserved or mname in param_names):
            wname = free_name(mname, members | reserved)
            members.add(wname)
            if mname in _linen_reserved():
                why = ""
            elif mname in reserved:
                why = _OWN_NAME
            else:
                why = _PARAM_NAME
            renamed.append((mname, wname + why))
        train = "train" if "train" in sig.parameters else None
        doc = doc_of(fn)
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

    extra = kontext_fields(cls, wrapped, imports, names)
    type_params, generic_base = class_generics(
        make_context(cls, cls, wrapped, imports, names), cls, target
    )
    doc = doc_of(cls)
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


def _rngs_param(params: list[inspect.Parameter]) -> str | None:
    """The constructor parameter the runtime fills with ``nnx.Rngs`` (see
    :func:`nnxgen.runtime._spec.rngs_param`, the rule both sides share)."""
    return rngs_param(params)


def is_key_annotation(annotation: Any) -> bool:
    """Whether a method's ``rngs`` parameter is annotated as a PRNG key.

    Not a key (an ``nnx.Rngs``, as before): no annotation, ``Any``, or one
    that names ``Rngs`` / ``RngStream`` anywhere (``nnx.Rngs``,
    ``nnx.Rngs | None``, a subclass such as ``MyRngs``; as an object or as the
    text ``from __future__ import annotations`` leaves). Anything else is a key:
    ``jax.Array``, ``jax.typing.ArrayLike``, ``PRNGKey``, jaxtyping's
    ``PRNGKeyArray`` / ``Key[Array, ""]``, ``jax.Array | None``...
    """
    nnx = flax_nnx()
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
        return is_key_annotation(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return all(is_key_annotation(a) for a in members)
    return True
