"""Turn :class:`~nnxgen.spec.FileSpec` objects into formatted Python source.

Python prepares laid-out snippets (signatures, calls, docstrings: see
:mod:`nnxgen.layout`); the jinja2 templates in ``templates/`` decide the shape
of the file. ``--templates DIR`` puts a user's templates in front of ours.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import sys
from pathlib import Path
from typing import Any

import jinja2

from nnxgen import lintcompat, render_nnx
from nnxgen.layout import INDENT, Seq, dict_of, docstring, fits, lay_out, tuple_of
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
    if m.train_param is None:
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
    mode = m.train_param or "train"
    call = Seq(
        "_rt.call(",
        ["self", f'"{m.name}"', tuple_of(positional) if positional else "()", kw, mode],
        ")",
    )
    return lay_out(INDENT * 2, "return ", call)


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
    """``head + value`` (an assignment), split the way ruff splits a long call."""
    import ast

    line = f"{indent}{head}{value}"
    if fits(line):
        return [line]
    node = ast.parse(value, mode="eval").body
    if not isinstance(node, ast.Call):
        return [line]

    def seg(n: ast.AST) -> str:
        return ast.get_source_segment(value, n) or ""

    items: list[str | Seq] = [seg(a) for a in node.args]
    items += [
        f"{k.arg}={seg(k.value)}" if k.arg else f"**{seg(k.value)}"
        for k in node.keywords
    ]
    return lay_out(indent, head, Seq(seg(node.func) + "(", items, ")"))


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


def _section(module: str) -> int:
    """isort section (as ruff's defaults see it): 0 future, 1 stdlib, 2 third party, 3 first party."""
    top = module.split(".")[0]
    if top == "__future__":
        return 0
    if top in sys.stdlib_module_names:
        return 1
    root = Path.cwd()
    for base in (root, root / "src"):
        if (base / top).is_dir() or (base / f"{top}.py").is_file():
            return 3
    return 2


def _member_key(name: str) -> tuple[int, str]:
    # ruff's order-by-type: CONSTANTS, then Classes, then everything else.
    if name.isupper() and len(name) > 1:
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    return kind, name.lower()


def _import_lines(imports: list[Import]) -> list[str]:
    """Import statements in isort order (ruff's defaults), blank lines between sections."""
    lines: list[str] = []
    by_section: dict[int, list[Import]] = {}
    for i in set(imports):
        by_section.setdefault(_section(i.module), []).append(i)
    for section in sorted(by_section):
        items = by_section[section]
        block: list[str] = []
        plain = sorted(
            (i for i in items if i.name is None),
            key=lambda i: (i.module.lower(), (i.asname or "").lower()),
        )
        block += [i.statement() for i in plain]
        froms: dict[str, list[Import]] = {}
        for i in items:
            if i.name is not None:
                froms.setdefault(i.module, []).append(i)
        for module in sorted(froms, key=str.lower):
            members = froms[module]
            combined = sorted(
                {i.name for i in members if not i.asname}, key=_member_key
            )
            aliased = sorted(
                (i for i in members if i.asname),
                key=lambda i: (_member_key(i.name or ""), (i.asname or "").lower()),
            )
            stmts: list[tuple[tuple[int, str], list[str] | Import]] = []
            if combined:
                stmts.append((_member_key(combined[0]), combined))  # type: ignore[arg-type]
            stmts += [(_member_key(i.name or ""), i) for i in aliased]
            for _, item in sorted(stmts, key=lambda s: s[0]):
                if isinstance(item, Import):
                    stmt = item.statement()
                    if fits(stmt):
                        block.append(stmt)
                    else:  # as ruff wraps it: one aliased name in parentheses
                        block += lay_out(
                            "",
                            f"from {module} import ",
                            Seq(
                                "(",
                                [f"{item.name} as {item.asname}"],
                                ")",
                                explode=True,
                            ),
                        )
                    continue
                flat = f"from {module} import {', '.join(item)}"
                if fits(flat):
                    block.append(flat)
                else:
                    block += lay_out(
                        "",
                        f"from {module} import ",
                        Seq("(", list(item), ")", explode=True),
                    )
        if lines:
            lines.append("")
        lines += block
    return lines


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
    data += template_sources(
        env, render_nnx.TEMPLATES if _is_nnx_file(spec) else LINEN_TEMPLATES
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def render_file(spec: FileSpec, templates: str | Path | None = None) -> str:
    env = environment(templates)
    imports = _dedupe_imports(lintcompat.modernize_imports(set(spec.imports)))
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
    text = template.render(**context)
    nn = aliases.get("nn") if classes else None
    if nn is not None:
        # A class body binds `nn` (a field): flax.linen is imported as `nn`'s alias.
        text = _rebase_classes(text, classes, nn)
    codes = lintcompat.noqa_codes(text)
    if codes:
        text = template.render(**{**context, "noqa": ", ".join(codes)})
        if nn is not None:
            text = _rebase_classes(text, classes, nn)
    return text


def _rebase_classes(text: str, classes: tuple[ClassSpec, ...], nn: str) -> str:
    """``class X(nn.Module):`` lines (the template's) with flax.linen's alias."""
    lines = text.split("\n")
    heads = {f"class {c.name}(nn.Module):" for c in classes}
    return "\n".join(
        f"{line[: -len('(nn.Module):')]}({nn}.Module):" if line in heads else line
        for line in lines
    )
