"""Turn :class:`~nnxgen.spec.FileSpec` objects into formatted Python source.

Python prepares snippets (signatures, calls, docstrings: see
:mod:`nnxgen.layout`); the jinja2 templates in ``templates/`` decide the shape
of the file. ``--templates DIR`` puts a user's templates in front of ours. The
text is then laid out by ruff with the configuration of the project it is
written into (:mod:`nnxgen.formatting`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
from pathlib import Path
from typing import Any

import jinja2

from nnxgen import formatting, render_nnx
from nnxgen.layout import INDENT, Seq, dict_of, docstring, lay_out, tuple_of
from nnxgen.spec import (
    ClassSpec,
    FileSpec,
    Import,
    LinenClassSpec,
    MethodSpec,
    ParamSpec,
)

TEMPLATE = "module.py.jinja"
TYPE_CHECKING_IMPORT = Import("typing", "TYPE_CHECKING")


class RenderError(ValueError):
    pass


def _package_templates() -> Path:
    """``templates/`` as installed (``nnxgen/templates``), or beside a source checkout."""
    try:
        return Path(str(importlib.resources.files("nnxgen.templates")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "templates"


def environment(user_dir: str | Path | None = None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if user_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(user_dir)))
    loaders.append(jinja2.FileSystemLoader(str(_package_templates())))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


#: The templates a Linen-wrapper file is rendered from.
LINEN_TEMPLATES = ("class.py.jinja", TEMPLATE)


def template_sources(
    env: jinja2.Environment, names: tuple[str, ...] = LINEN_TEMPLATES
) -> str:
    """The text of the templates a file is rendered from (part of the fingerprint)."""
    parts = []
    for name in sorted(names):
        src, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        parts.append(f"{name}\n{src}")
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Snippets.


def _param_text(p: ParamSpec) -> str:
    prefix = {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}.get(p.kind, "")
    text = f"{prefix}{p.name}"
    if p.annotation is not None:
        text += f": {p.annotation}"
    if p.default is not None:
        text += f" = {p.default}" if p.annotation is not None else f"={p.default}"
    return text


def _method_params(m: MethodSpec) -> list[str]:
    out = ["self"]
    kinds = [p.kind for p in m.params]
    posonly = [p for p in m.params if p.kind == "POSITIONAL_ONLY"]
    out += [_param_text(p) for p in posonly]
    if posonly:
        out.append("/")
    out += [_param_text(p) for p in m.params if p.kind == "POSITIONAL_OR_KEYWORD"]
    var = [p for p in m.params if p.kind == "VAR_POSITIONAL"]
    kwonly = [_param_text(p) for p in m.params if p.kind == "KEYWORD_ONLY"]
    if m.train_param is None and not m.paramspec:
        # (not between `*args: P.args` and `**kwargs: P.kwargs`: that method's
        # mode comes from `nnxgen.runtime.mode`)
        kwonly.append("train: bool | None = None")
    if var:
        out.append(_param_text(var[0]))
    elif kwonly:
        out.append("*")
    out += kwonly
    out += [_param_text(p) for p in m.params if p.kind == "VAR_KEYWORD"]
    assert len(kinds) == len(m.params)
    return out


def _call_body(cls: ClassSpec, m: MethodSpec) -> list[str]:
    positional: list[str | Seq] = [
        p.name
        for p in m.params
        if p.kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD") and not p.by_keyword
    ]
    positional += [f"*{p.name}" for p in m.params if p.kind == "VAR_POSITIONAL"]
    keyword: list[tuple[str, str | Seq]] = [
        (f'"{p.name}"', p.name)
        for p in m.params
        if p.kind == "KEYWORD_ONLY" or p.by_keyword
    ]
    kw = dict_of(keyword)
    kw.items += [f"**{p.name}" for p in m.params if p.kind == "VAR_KEYWORD"]
    mode = m.train_param or ("None" if m.paramspec else "train")
    call = Seq(
        "_rt.call(",
        ["self", f'"{m.name}"', tuple_of(positional) if positional else "()", kw, mode],
        ")",
    )
    return call_statement(call, m)


def returns_never(returns: str | None) -> bool:
    """Whether a return annotation says the method never returns (``NoReturn``)."""
    import ast

    if returns is None:
        return False
    try:
        node = ast.parse(returns, mode="eval").body
    except SyntaxError:
        return False
    while isinstance(node, ast.Attribute):
        if node.attr in ("NoReturn", "Never"):
            return True
        node = node.value
    return isinstance(node, ast.Name) and node.id in ("NoReturn", "Never")


def call_statement(call: Seq, m: MethodSpec) -> list[str]:
    """The body that runs ``call``: ``return call``, or for a method that never
    returns (``-> NoReturn``) the call and a ``raise`` type checkers accept."""
    if not returns_never(m.returns):
        return lay_out(INDENT * 2, "return ", call)
    message = f"{m.name} returned; its annotation says it never does"
    return [
        *lay_out(INDENT * 2, "", call),
        f'{INDENT * 2}raise AssertionError("{message}")',
    ]


def _method(cls: ClassSpec, m: MethodSpec) -> dict[str, Any]:
    head = f"def {m.wrapper_name}"
    tail = f" -> {m.returns}:" if m.returns is not None else ":"
    params = Seq("(", list(_method_params(m)), ")")
    return {
        "def_lines": "\n".join(lay_out(INDENT, head, params, tail)),
        "doc_lines": "\n".join(docstring(m.doc, INDENT * 2, raw=m.doc_raw))
        if m.doc
        else "",
        "body_lines": "\n".join(_call_body(cls, m)),
    }


def _field_lines(cls: ClassSpec, dc: str = "dataclasses") -> list[str]:
    lines: list[str] = []
    seen_default = False
    # Names bound in the class body (a factory name must not be one of them).
    body_names = {p.field for p in cls.params} | {f.name for f in cls.extra_fields}
    for p in cls.params:
        if p.default_comment:
            lines.append(f"{INDENT}# {p.field}: {p.default_comment}")
        ann = p.annotation or "Any"
        default = p.default
        factory = p.unhashable_default
        if p.kind == "VAR_POSITIONAL":
            ann, default, factory = f"tuple[{ann}, ...]", "()", False
        elif p.kind == "VAR_KEYWORD":
            ann, default, factory = f"dict[str, {ann}]", "{}", True
        lines.extend(
            _field(p.field, ann, default, factory, seen_default, body_names, dc)
        )
        seen_default = seen_default or default is not None
    for f in cls.extra_fields:
        lines.extend(
            _field(f.name, f.annotation, f.default, False, seen_default, body_names, dc)
        )
        seen_default = seen_default or f.default is not None
    return lines


#: Empty-container defaults and the type that makes them (ruff: PIE807, C408).
_EMPTY_FACTORIES = {
    "{}": "dict",
    "dict()": "dict",
    "[]": "list",
    "list()": "list",
    "set()": "set",
}


def _field(
    name: str,
    ann: str,
    default: str | None,
    factory: bool,
    kw_only: bool,
    body_names: set[str],
    dc: str = "dataclasses",
) -> list[str]:
    head = f"{name}: {ann} = "
    if default is None:
        if not kw_only:
            return [f"{INDENT}{name}: {ann}"]
        return lay_out(INDENT, head, Seq(f"{dc}.field(", ["kw_only=True"], ")"))
    if factory:
        value = _EMPTY_FACTORIES.get(default)
        if value is None or value in body_names:
            value = f"lambda: {default}"
        items: list[str | Seq] = [f"default_factory={value}"]
        return lay_out(INDENT, head, Seq(f"{dc}.field(", items, ")"))
    return _assign(INDENT, head, default)


def _assign(indent: str, head: str, value: str) -> list[str]:
    """``head + value`` (an assignment), on one line (ruff splits it later)."""
    return [f"{indent}{head}{value}"]


def _spec_lines(cls: ClassSpec) -> list[str]:
    params: list[str | Seq] = []
    simple = all(
        p.field == p.name and p.kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")
        for p in cls.params
    )
    for p in cls.params:
        if simple:
            params.append(f'"{p.name}"')
        else:
            params.append(
                Seq("_rt.Param(", [f'"{p.name}"', f'"{p.field}"', f'"{p.kind}"'], ")")
            )
    items: list[str | Seq] = [cls.nnx_ref, tuple_of(params)]
    if not cls.takes_rngs:
        items.append("takes_rngs=False")
    elif isinstance(cls.takes_rngs, str):
        items.append(f'takes_rngs="{cls.takes_rngs}"')
    rngs_methods = [f'"{m.name}"' for m in cls.methods if m.takes_rngs]
    if rngs_methods:
        items.append(Seq("rngs_methods=(", rngs_methods, ")", single_comma=True))
    # methods whose `rngs` is a PRNG key (written only when there are some, so
    # files without one are unchanged)
    key_methods = [f'"{m.name}"' for m in cls.methods if m.takes_rngs and m.key_rngs]
    if key_methods:
        items.append(Seq("key_rngs_methods=(", key_methods, ")", single_comma=True))
    return lay_out(INDENT, "__nnxgen__ = ", Seq("_rt.WrapperSpec(", items, ")"))


def _needs_constant(expr: str) -> bool:
    """A default ruff flags in a signature: a call (outside a lambda; B008) or a
    list/dict/set display or comprehension (B006)."""
    import ast

    def has_call(node: ast.AST) -> bool:
        if isinstance(node, ast.Lambda):
            return False
        if isinstance(node, ast.Call):
            return True
        return any(has_call(child) for child in ast.iter_child_nodes(node))

    node = ast.parse(expr, mode="eval").body
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
    return isinstance(node, mutable) or has_call(node)


def _hoist_defaults(
    classes: tuple[ClassSpec, ...],
) -> tuple[tuple[ClassSpec, ...], list[str]]:
    """Move method defaults that are calls or mutable displays to module constants.

    A signature default is evaluated once, when the ``def`` runs; a constant
    assigned just before the class is evaluated once too, so every call sees
    one default object, as in the NNX method, and the signature stays
    lint-clean (ruff B008, B006).
    """
    constants: list[str] = []
    used: set[str] = set()
    out = []
    for cls in classes:
        methods = []
        for m in cls.methods:
            params = []
            for p in m.params:
                if p.default is not None and _needs_constant(p.default):
                    base = f"_{cls.name}_{m.wrapper_name.strip('_')}_{p.name}_default"
                    name, n = base, 1
                    while name in used:
                        n += 1
                        name = f"{base}{n}"
                    used.add(name)
                    constants += _assign("", f"{name} = ", p.default)
                    p = dataclasses.replace(p, default=name)
                params.append(p)
            methods.append(dataclasses.replace(m, params=tuple(params)))
        out.append(dataclasses.replace(cls, methods=tuple(methods)))
    return tuple(out), constants


def _class_context(cls: ClassSpec, dc: str = "dataclasses") -> dict[str, Any]:
    return {
        "name": cls.name,
        "target": cls.target,
        "doc_lines": "\n".join(docstring(cls.doc, INDENT, raw=cls.doc_raw))
        if cls.doc
        else "",
        "field_lines": "\n".join(_field_lines(cls, dc)),
        "spec_lines": "\n".join(_spec_lines(cls)),
        "renamed": cls.renamed,
        "methods": [_method(cls, m) for m in cls.methods],
    }


# ---------------------------------------------------------------------------
# Imports.


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


def _modernize_imports(imports: set[Import]) -> set[Import]:
    out = set()
    for i in imports:
        if i.module in ("typing", "typing_extensions") and i.name in _ABC:
            i = dataclasses.replace(i, module="collections.abc")
        out.add(i)
    return out


def _import_lines(imports: list[Import]) -> list[str]:
    """One statement per import; ruff's isort, with the project's settings, sorts
    and groups them (:mod:`nnxgen.formatting`)."""
    return sorted({i.statement() for i in imports})


def _import_target(i: Import) -> object:
    import importlib

    mod = importlib.import_module(i.module)
    return mod if i.name is None else getattr(mod, i.name)


def _runtime_import(i: Import) -> Import:
    if not i.type_checking:
        return i
    try:
        _import_target(i)
    except Exception:  # noqa: BLE001 - not importable at run time: keep it type-only
        return i
    return dataclasses.replace(i, type_checking=False)


def _dedupe_imports(imports: set[Import]) -> set[Import]:
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


def _check_names(classes: tuple[ClassSpec, ...], imports: set[Import]) -> None:
    bound = {i.bound_name() for i in imports}
    for cls in classes:
        if cls.name in bound:
            raise RenderError(
                f"wrapper class {cls.name!r} clashes with an imported name used in a "
                f"signature; rename it with TARGET=NewName or use separate files"
            )


# ---------------------------------------------------------------------------
# Files.


def _is_nnx_file(spec: FileSpec) -> bool:
    return any(isinstance(c, LinenClassSpec) for c in spec.classes)


def fingerprint(spec: FileSpec, env: jinja2.Environment) -> str:
    data = repr(
        (
            spec.classes,
            sorted(spec.imports, key=Import.sort_key),
            spec.nnxgen_version,
            spec.runtime_version,
        )
    )
    raw = [
        (c.name, c.doc_raw, [m.name for m in c.methods if m.doc_raw])
        for c in spec.classes
        if c.doc_raw or any(m.doc_raw for m in c.methods)
    ]
    if raw:
        data += repr(raw)
    keyed = [
        (c.name, [m.name for m in c.methods if getattr(m, "key_rngs", False)])
        for c in spec.classes
        if any(getattr(m, "key_rngs", False) for m in c.methods)
    ]
    if keyed:  # methods whose `rngs` is a PRNG key (not in MethodSpec's repr)
        data += repr(keyed)
    if spec.aliases:
        data += repr(spec.aliases)
    ps = [
        (c.name, [m.name for m in c.methods if m.paramspec])
        for c in spec.classes
        if any(m.paramspec for m in c.methods)
    ]
    if ps:  # methods taking a ParamSpec's *args / **kwargs (not in the repr)
        data += repr(ps)
    generic = [
        (c.name, c.type_params, c.generic_base)
        for c in spec.classes
        if c.type_params or c.generic_base
    ]
    if generic:  # generic classes (not in the repr)
        data += repr(generic)
    if spec.skipped:
        data += repr(spec.skipped)
    data += template_sources(
        env, render_nnx.TEMPLATES if _is_nnx_file(spec) else LINEN_TEMPLATES
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def render_file(
    spec: FileSpec,
    templates: str | Path | None = None,
    location: str | Path | None = None,
) -> str:
    """The file's text; ``location``: where it lies (for its project's ruff
    configuration), when that is not ``spec.output`` as seen from here."""
    env = environment(templates)
    imports = _dedupe_imports(_modernize_imports(set(spec.imports)))
    _check_names(spec.classes, imports)
    if any(getattr(c, "extra_fields", ()) for c in spec.classes):
        # kontext evaluates every class annotation at run time (typing.get_type_hints):
        # names the source keeps under TYPE_CHECKING must be real imports here.
        imports = {_runtime_import(i) for i in imports}
    runtime_imports = [i for i in imports if not i.type_checking]
    tc_imports = sorted(
        {i for i in imports if i.type_checking} - set(runtime_imports),
        key=lambda i: i.statement(),
    )
    if tc_imports:
        runtime_imports.append(TYPE_CHECKING_IMPORT)
    aliases = dict(spec.aliases)
    dc = aliases.get("dataclasses", "dataclasses")
    if any(
        f"{dc}.field(" in line
        for c in spec.classes
        if isinstance(c, ClassSpec)
        for line in _field_lines(c, dc)
    ):
        runtime_imports.append(
            Import("dataclasses", None, None if dc == "dataclasses" else dc)
        )
    spec = dataclasses.replace(spec, fingerprint=fingerprint(spec, env))
    if _is_nnx_file(spec):
        nnx_classes, constants = render_nnx.hoist_defaults(spec.classes)  # type: ignore[arg-type]
        classes: Any = ()
        contexts = [render_nnx.class_context(c) for c in nnx_classes]
        template_name = render_nnx.MODULE_TEMPLATE
    else:
        classes, constants = _hoist_defaults(spec.classes)  # type: ignore[arg-type]
        contexts = [_class_context(c, dc) for c in classes]
        template_name = TEMPLATE
    context = {
        "constants": constants,
        "spec": spec,
        "import_lines": _import_lines(runtime_imports),
        "type_checking_lines": _import_lines(tc_imports),
        "classes": contexts,
        "noqa": "",
    }
    template = env.get_template(template_name)
    nn = aliases.get("nn") if classes else None

    def render(noqa: str) -> str:
        text = template.render(**{**context, "noqa": noqa})
        if nn is not None:
            # A class body binds `nn` (a field): flax.linen is imported as `nn`'s alias.
            text = _rebase_classes(text, classes, nn)
        return _class_heads(_skipped_header(text, spec.skipped), spec.classes)

    try:  # laid out by ruff, with the output's project configuration
        return formatting.finish(render, location or spec.output)
    except formatting.FormatError as err:
        raise RenderError(str(err)) from None


#: The header line the skip list follows (the templates' last fixed line).
_FINGERPRINT_LINE = "# nnxgen-fingerprint: "


def _skipped_header(text: str, skipped: tuple[tuple[str, str], ...]) -> str:
    """The classes of a whole-module target that were not wrapped, and why, as
    header comments (part of the file: ``nnxgen check`` compares them).

    Added here rather than in the templates, whose text is part of every file's
    fingerprint."""
    if not skipped:
        return text
    import textwrap

    lines = ["# nnxgen-skipped (cannot be wrapped; the other classes are):"]
    for target, reason in skipped:
        lines += textwrap.wrap(
            f"{target}: {reason}",
            width=88,
            initial_indent="#   ",
            subsequent_indent="#     ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    start = text.find(_FINGERPRINT_LINE)  # (user templates may lack it)
    end = text.find("\n", max(start, 0)) + 1
    return text[:end] + "\n".join(lines) + "\n" + text[end:]


def _class_heads(text: str, classes: Any) -> str:
    """``class X(nn.Module):`` / ``class X(nnx.Module):`` lines (the templates')
    of generic classes: ``class X[T](...)`` or ``class X(..., Generic[T])``.

    Done here rather than in the templates, whose text is part of every file's
    fingerprint."""
    generic = {c.name: c for c in classes if c.type_params or c.generic_base}
    if not generic:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("class ") or not line.endswith("):"):
            continue
        name, _, bases = line[len("class ") : -len("):")].partition("(")
        c = generic.get(name)
        if c is None:
            continue
        items: list[str | Seq] = [bases]
        if c.generic_base:
            items.append(c.generic_base)
        lines[i] = "\n".join(
            lay_out("", f"class {name}{c.type_params}", Seq("(", items, ")"), ":")
        )
    return "\n".join(lines)


def _rebase_classes(text: str, classes: tuple[ClassSpec, ...], nn: str) -> str:
    """``class X(nn.Module):`` lines (the template's) with flax.linen's alias."""
    lines = text.split("\n")
    heads = {f"class {c.name}(nn.Module):" for c in classes}
    return "\n".join(
        f"{line[: -len('(nn.Module):')]}({nn}.Module):" if line in heads else line
        for line in lines
    )
