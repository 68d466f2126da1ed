"""Plain data describing what the inspector saw; the renderer only reads these."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement of a generated file.

    ``name is None`` means ``import module [as asname]``; otherwise
    ``from module import name [as asname]``.
    """

    module: str
    name: str | None = None
    asname: str | None = None
    type_checking: bool = False

    def sort_key(self) -> tuple[str, str, str, bool]:
        return (self.module, self.name or "", self.asname or "", self.type_checking)

    def bound_name(self) -> str:
        if self.asname:
            return self.asname
        if self.name is not None:
            return self.name
        return self.module.split(".")[0]

    def statement(self) -> str:
        alias = f" as {self.asname}" if self.asname else ""
        if self.name is None:
            return f"import {self.module}{alias}"
        return f"from {self.module} import {self.name}{alias}"


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """A parameter of an NNX constructor or method, as written in the source."""

    name: str  # NNX name
    kind: str  # inspect.Parameter kind name, e.g. "KEYWORD_ONLY"
    annotation: str | None  # expression text for the generated file
    default: str | None  # expression text; None when the parameter has no default
    default_comment: str | None = None  # why/what, when the default is a fallback
    field: str = ""  # Linen field name (constructor parameters only)
    unhashable_default: bool = False  # needs dataclasses.field(default_factory=...)
    by_keyword: bool = False  # passed by keyword (follows a dropped `rngs` slot)

    @property
    def has_default(self) -> bool:
        return self.default is not None


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name: str  # NNX method name
    wrapper_name: str  # method name on the wrapper
    params: tuple[ParamSpec, ...]  # without self and rngs
    returns: str | None
    doc: str | None
    takes_rngs: bool
    train_param: str | None  # name of an NNX parameter called `train`, if any
    #: the source docstring is a raw string (r"""..."""); not in the repr, which
    #: the fingerprint reads (render.fingerprint adds it when set)
    doc_raw: bool = dataclasses.field(default=False, repr=False)
    #: its ``rngs`` parameter is annotated as a PRNG key (``jax.Array``...), not an
    #: ``nnx.Rngs``; not in the repr either (render.fingerprint adds it when set)
    key_rngs: bool = dataclasses.field(default=False, repr=False)
    #: takes ``*args: P.args, **kwargs: P.kwargs`` (a ParamSpec): nothing may stand
    #: between the two, so the Linen wrapper adds no ``train`` keyword (its mode
    #: comes from ``nnxgen.runtime.mode``); not in the repr (see render.fingerprint)
    paramspec: bool = dataclasses.field(default=False, repr=False)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """An extra dataclass field that is not a constructor argument (kontext keys)."""

    name: str
    annotation: str
    default: str | None


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    name: str  # wrapper class name
    target: str  # "module:QualName" it was generated from
    nnx_ref: str  # expression naming the NNX class in the generated file
    doc: str | None
    params: tuple[ParamSpec, ...]  # constructor parameters except rngs
    takes_rngs: bool | str  # True: `rngs`; a str: the name of an nnx.Rngs parameter
    methods: tuple[MethodSpec, ...]
    extra_fields: tuple[FieldSpec, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (nnx name, wrapper name) pairs
    #: the source docstring is a raw string (r"""..."""); not in the repr, which
    #: the fingerprint reads (render.fingerprint adds it when set)
    doc_raw: bool = dataclasses.field(default=False, repr=False)
    #: a generic class: PEP 695 type parameters as written (``"[T: int]"``), or the
    #: ``Generic[...]`` base the wrapper adds (``"Generic[TObs, TAct]"``); not in the
    #: repr (render.fingerprint adds them when set)
    type_params: str = dataclasses.field(default="", repr=False)
    generic_base: str = dataclasses.field(default="", repr=False)


@dataclasses.dataclass(frozen=True)
class FileSpec:
    targets: tuple[str, ...]
    output: str
    command: str
    classes: tuple[ClassSpec, ...] | tuple[LinenClassSpec, ...]
    imports: tuple[Import, ...]
    nnxgen_version: str
    runtime_version: int
    fingerprint: str = ""
    #: the generated file's own names under private aliases (("nn", "_nn"), ...)
    aliases: tuple[tuple[str, str], ...] = ()
    #: classes of a whole-module target that could not be wrapped: (target, reason)
    skipped: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class LinenClassSpec:
    """An NNX wrapper of a Linen module (the other direction)."""

    name: str  # wrapper class name
    target: str  # "module:QualName" it was generated from
    linen_ref: str  # expression naming the Linen class in the generated file
    doc: str | None
    fields: tuple[ParamSpec, ...]  # the Linen dataclass fields, less parent/name
    methods: tuple[MethodSpec, ...]  # train_param unused; see `modes`
    #: per method (same order): the Linen arguments filled from the NNX mode
    modes: tuple[tuple[str, ...], ...]
    renamed: tuple[tuple[str, str], ...] = ()  # (Linen name, wrapper name) pairs
    doc_raw: bool = dataclasses.field(default=False, repr=False)
    #: a generic class: PEP 695 type parameters as written (``"[T: int]"``), or the
    #: ``Generic[...]`` base the wrapper adds (``"Generic[TObs, TAct]"``); not in the
    #: repr (render.fingerprint adds them when set)
    type_params: str = dataclasses.field(default="", repr=False)
    generic_base: str = dataclasses.field(default="", repr=False)

    @property
    def has_modes(self) -> bool:
        return any(self.modes)
