"""Resolve target strings (``pkg.mod:Class``, ``pkg.mod.Class``, ``pkg.mod``) to classes."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import inspect
import keyword
import os
import sys
import types


class TargetError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Target:
    text: str  # as written (normalised to module:QualName[=Name])
    cls: type
    wrapper_name: str
    module: str = ""  # where the target names it: module and attribute path
    path: str = ""
    #: found in a whole-module target (``pkg.mod``): a class that cannot be
    #: wrapped is skipped (named in the file's header), not an error
    whole_module: bool = False


def _ensure_cwd_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _hook_hint() -> str:
    """Where an import fails inside a pre-commit hook (pre-commit sets ``PRE_COMMIT=1``),
    the usual cause is the hook's own environment, not the code: say how to fix that."""
    if os.environ.get("PRE_COMMIT") != "1":
        return ""
    return (
        "; inside pre-commit the isolated nnxgen hook has only nnxgen and its own "
        "dependencies: run it in the project's environment (a `repo: local` hook with "
        "`language: system`) or add the package to the hook's `additional_dependencies` "
        "(docs/pre-commit.md)"
    )


def _import(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            raise
        raise TargetError(
            f"importing {name!r} failed: {type(err).__name__}: {err}; "
            "install the missing package or fix the import" + _hook_hint()
        ) from err
    except Exception as err:  # the user's module raised while importing
        raise TargetError(
            f"importing {name!r} failed: {type(err).__name__}: {err}; fix the module so it imports"
            + (_hook_hint() if isinstance(err, ImportError) else "")
        ) from err


def _class_lines(module: types.ModuleType) -> dict[str, int]:
    """Line of each top-level class in one parse of the module (not one per class)."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return {}
    return {n.name: n.lineno for n in tree.body if isinstance(n, ast.ClassDef)}


def _nnx_classes_in(
    module: types.ModuleType, base: type | None = None
) -> list[tuple[str, type]]:
    """(module-level name, class) of each concrete NNX class (subclass of
    ``base``, default ``nnx.Module``) defined in ``module``.

    A class made inside a factory function (``Dyn = make(3)``, whose ``__name__``
    is the factory's) is listed under the name the module binds it to.
    """
    from flax import nnx  # start-up cost: flax only once a target is resolved

    base = nnx.Module if base is None else base
    found: dict[type, str] = {}
    for name, obj in vars(module).items():
        if (
            isinstance(obj, type)
            and issubclass(obj, base)
            and obj.__module__ == module.__name__
            and not inspect.isabstract(obj)
        ):
            if obj.__qualname__ == name:
                found[obj] = name
            elif getattr(module, obj.__qualname__, None) is not obj:
                found.setdefault(obj, name)  # made by a factory, bound here
            # else an alias (Old = New): New is listed under its own name

    lines = _class_lines(module)

    def line(item: tuple[type, str]) -> int:
        return lines.get(item[1], 0)

    return [
        (name, c) for c, name in sorted(found.items(), key=lambda i: (line(i), i[1]))
    ]


def resolve(text: str) -> list[Target]:
    """Classes named by one target string; a bare module means all its NNX classes."""
    _ensure_cwd_on_path()
    spec, _, rename = text.partition("=")
    spec = spec.strip()
    if not spec or any(c.isspace() for c in spec):
        raise TargetError(f"bad target {text!r}: write it as package.module:Class")
    _refuse_path(text, spec)
    if ":" in spec:
        module_name, _, qualname = spec.partition(":")
        try:
            module = _import(module_name)
        except ModuleNotFoundError as err:
            raise TargetError(
                f"no module named {err.name!r} (from target {text!r}); check the spelling, "
                "run from the project root, or install the package" + _hook_hint()
            ) from None
    else:
        parts = spec.split(".")
        module = None
        qualname = ""
        for i in range(len(parts), 0, -1):
            try:
                module = _import(".".join(parts[:i]))
            except ModuleNotFoundError as err:
                if err.name and ".".join(parts[:i]).startswith(err.name) and i > 1:
                    continue
                raise TargetError(
                    f"no module named {err.name!r} (from target {text!r}); check the spelling, "
                    "run from the project root, or install the package" + _hook_hint()
                ) from None
            qualname = ".".join(parts[i:])
            break
        assert module is not None
        module_name = module.__name__
    if not qualname:
        if rename:
            raise TargetError(f"{text!r}: a whole-module target cannot be renamed")
        classes = _nnx_classes_in(module)
        if not classes:
            # no NNX classes: its Linen modules (each gets an NNX wrapper)
            import flax.linen  # start-up cost (as above)

            classes = _nnx_classes_in(module, flax.linen.Module)
        if not classes:
            raise TargetError(
                f"module {module_name!r} defines no concrete flax.nnx.Module or "
                "flax.linen.Module classes; name a class as module:Class"
            )
        return [
            Target(f"{module_name}:{name}", c, name, module_name, name, True)
            for name, c in classes
        ]
    obj = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise TargetError(
                f"module {module_name!r} has no attribute {qualname!r} (target {text!r}); "
                + _did_you_mean(obj, part)
            )
        obj = getattr(obj, part)
    # Named as the target: a class bound to another name (``Dyn = make(3)``,
    # whose ``__name__`` is ``Made``) gets the name the user wrote.
    name = rename.strip() or qualname.split(".")[-1]
    if not name.isidentifier() or keyword.iskeyword(name):
        raise TargetError(f"{text!r}: {name!r} is not a valid class name")
    norm = f"{module_name}:{qualname}" + (
        f"={rename.strip()}" if rename.strip() else ""
    )
    return [Target(norm, obj, name, module_name, qualname)]  # type: ignore[arg-type]


def _did_you_mean(owner: object, name: str) -> str:
    """``did you mean 'Linear'?`` for a misspelt class of ``owner`` (a module or class)."""
    classes = [
        n
        for n, v in vars(owner).items()
        if isinstance(v, type) and not n.startswith("_")
    ]
    folded = {n.lower(): n for n in classes}
    if name.lower() in folded:  # the case is all that differs
        close = [folded[name.lower()]]
    else:
        close = difflib.get_close_matches(name, classes, n=3, cutoff=0.6)
    if not close:
        return "check the class name"
    if len(close) == 1:
        return f"did you mean {close[0]!r}?"
    return f"did you mean one of {', '.join(map(repr, close))}?"


def _refuse_path(text: str, spec: str) -> None:
    """A file path where a module path belongs (``mypkg/models.py:CNN``): say the dotted form."""
    module, colon, qualname = spec.partition(":")
    if len(module) == 1 and colon and qualname[:1] in ("/", "\\"):  # C:/pkg/m.py:Class
        module, colon, qualname = (
            spec.rpartition(":") if spec.count(":") > 1 else (spec, "", "")
        )
    if not ("/" in module or "\\" in module or module.endswith(".py")):
        return
    path = module.replace("\\", "/")
    path = path.removesuffix(".py")
    if os.path.isabs(path):
        try:
            path = os.path.relpath(path, os.getcwd()).replace(os.sep, "/")
        except ValueError:  # another drive
            pass
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if parts and parts[-1] == "__init__":
        parts.pop()
    if len(parts) > 1 and parts[0] == "src" and not os.path.exists("src/__init__.py"):
        parts.pop(0)  # a src layout: the package is importable without "src."
    if not parts or ".." in parts or not all(p.isidentifier() for p in parts):
        raise TargetError(
            f"bad target {text!r}: {module!r} is a file path; name the module by its "
            "dotted import path, e.g. mypkg.models:Class"
        )
    rename = text.partition("=")[2].strip()
    dotted = ".".join(parts) + (f":{qualname}" if colon else "")
    dotted += f"={rename}" if rename else ""
    raise TargetError(
        f"bad target {text!r}: {module!r} is a file path; use the dotted module path: "
        f"{dotted}"
    )
