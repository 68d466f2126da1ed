"""The import statements of a generated file: ``typing`` ABCs from
``collections.abc``, one binding per name (the same object imported twice is
imported once; two objects under one name are an error), type-only imports
made real where kontext evaluates annotations at run time."""

from __future__ import annotations

import dataclasses
import importlib

from nnxgen.codegen.errors import RenderError
from nnxgen.codegen.spec import ClassSpec, Import

TYPE_CHECKING_IMPORT = Import("typing", "TYPE_CHECKING")


#: ``typing`` names that are ABCs: imported from ``collections.abc`` instead (the
#: same annotation text, the non-deprecated source; ruff UP035).
_ABC = frozenset(
    {
        "AsyncGenerator", "AsyncIterable", "AsyncIterator", "Awaitable", "ByteString",
        "Callable", "Collection", "Container", "Coroutine", "Generator", "Hashable",
        "ItemsView", "Iterable", "Iterator", "KeysView", "Mapping", "MappingView",
        "MutableMapping", "MutableSequence", "MutableSet", "Reversible", "Sequence",
        "Sized", "ValuesView",
    }
)  # fmt: skip


def modernize_imports(imports: set[Import]) -> set[Import]:
    out = set()
    for i in imports:
        if i.module in ("typing", "typing_extensions") and i.name in _ABC:
            i = dataclasses.replace(i, module="collections.abc")
        out.add(i)
    return out


def import_lines(imports: list[Import]) -> list[str]:
    """One statement per import; ruff's isort, with the project's settings, sorts
    and groups them (:mod:`nnxgen.codegen.formatting`)."""
    return sorted({i.statement() for i in imports})


def _import_target(i: Import) -> object:
    mod = importlib.import_module(i.module)
    return mod if i.name is None else getattr(mod, i.name)


def runtime_import(i: Import) -> Import:
    if not i.type_checking:
        return i
    try:
        _import_target(i)
    except Exception:  # noqa: BLE001 - not importable at run time: keep it type-only
        return i
    return dataclasses.replace(i, type_checking=False)


def dedupe_imports(imports: set[Import]) -> set[Import]:
    """Drop imports that bind an already-bound name to the very same object.

    (``Array`` re-exported by several flax modules is one object.) Two different
    objects under one name is an error the user must resolve.
    """
    groups: dict[str, list[Import]] = {}
    for i in imports:
        groups.setdefault(i.bound_name(), []).append(i)
    out: set[Import] = set()
    for name, items in groups.items():
        keys = {
            i.module.split(".")[0] if i.name is None and not i.asname else i.statement()
            for i in items
        }
        if len(keys) == 1:
            out.update(items)
            continue
        try:
            objects = [_import_target(i) for i in items]
        except Exception:  # noqa: BLE001 - user code may raise anything here
            objects = []
        if objects and all(o is objects[0] for o in objects):
            best = min(
                items, key=lambda i: (i.type_checking, len(i.module), i.sort_key())
            )
            out.add(best)
            continue
        raise RenderError(
            f"the generated file would import two different things as {name!r} "
            f"({'; '.join(sorted(keys))}); generate these targets into separate files"
        )
    return out


def check_names(classes: tuple[ClassSpec, ...], imports: set[Import]) -> None:
    bound = {i.bound_name() for i in imports}
    for cls in classes:
        if cls.name in bound:
            raise RenderError(
                f"wrapper class {cls.name!r} clashes with an imported name used in a "
                f"signature; rename it with TARGET=NewName or use separate files"
            )
