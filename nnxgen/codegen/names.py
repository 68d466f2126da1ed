"""Names a generated file binds: where each wrapped class is imported from, under
which alias (``_NnxX`` / ``_LinenX``), and the one name table per file that keeps
two signatures' names for different objects apart (:class:`Names`)."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from typing import Any

from nnxgen.codegen.errors import InspectError
from nnxgen.codegen.spec import Import

RUNTIME = Import("nnxgen.runtime", None, "_rt")


def flax_nnx() -> Any:
    """``flax.nnx``, imported on first use (start-up cost: nnxgen's CLI starts
    without jax/flax until it must import a user's class)."""
    from flax import nnx  # start-up cost (see above)

    return nnx


def flax_linen() -> Any:
    """``flax.linen``, imported on first use (start-up cost, as :func:`flax_nnx`)."""
    import flax.linen  # start-up cost (see flax_nnx)

    return flax.linen


def is_linen_class(obj: Any) -> bool:
    """Whether ``obj`` is a ``flax.linen.Module`` subclass."""
    return isinstance(obj, type) and issubclass(obj, flax_linen().Module)


def nnx_bases() -> set[type]:
    """``nnx.Module`` and its bases: framework classes, not the user's."""
    return set(flax_nnx().Module.__mro__)


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
    alias = linen_alias(path[0]) if is_linen_class(cls) else nnx_alias(path[0])
    return Import(module, path[0], alias), ".".join([alias, *path[1:]])


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
        linen = flax_linen()
        self.aliases = Aliases(set(fields))
        a = self.aliases
        self.bound: dict[str, tuple[object, frozenset[Import]]] = {}
        for cls, name in wrappers.items():
            self.bound[name] = (("wrapper", cls), frozenset())
            imp, ref = class_import(cls)
            if "." not in ref:
                self.bound[ref] = (cls, frozenset({imp}))
        self.bound[a.nn] = (linen, frozenset({a.linen}))
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


def registered_path(cls: type) -> tuple[str, tuple[str, ...]] | None:
    """(module, attribute path) a target bound ``cls`` to (:func:`register_path`)."""
    return _PATHS.get(cls)
