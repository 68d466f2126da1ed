"""Turn a :class:`~nnxgen.codegen.spec.FileSpec` into the file's formatted text,
in either direction: the direction's class snippets (:mod:`nnxgen.to_linen.render`
or :mod:`nnxgen.to_nnx.render`) go into its jinja2 templates (``templates/``;
``--templates DIR`` puts a user's templates in front of ours), under a header
with the file's fingerprint; ruff then lays the text out with the configuration
of the project it is written into (:mod:`nnxgen.codegen.formatting`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import textwrap
from pathlib import Path
from typing import Any

import jinja2

from nnxgen.codegen import formatting
from nnxgen.codegen.environment import environment, template_sources
from nnxgen.codegen.errors import RenderError
from nnxgen.codegen.imports import (
    TYPE_CHECKING_IMPORT,
    check_names,
    dedupe_imports,
    import_lines,
    modernize_imports,
    runtime_import,
)
from nnxgen.codegen.layout import Seq, lay_out
from nnxgen.codegen.spec import ClassSpec, FileSpec, Import, LinenClassSpec
from nnxgen.to_linen import render as to_linen
from nnxgen.to_nnx import render as to_nnx


def _is_nnx_file(spec: FileSpec) -> bool:
    return any(isinstance(c, LinenClassSpec) for c in spec.classes)


def fingerprint(spec: FileSpec, env: jinja2.Environment) -> str:
    """What the file is a function of (spec reprs, template text), hashed."""
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
        env, to_nnx.TEMPLATES if _is_nnx_file(spec) else to_linen.TEMPLATES
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
    imports = dedupe_imports(modernize_imports(set(spec.imports)))
    check_names(spec.classes, imports)
    if any(getattr(c, "extra_fields", ()) for c in spec.classes):
        # kontext evaluates every class annotation at run time (typing.get_type_hints):
        # names the source keeps under TYPE_CHECKING must be real imports here.
        imports = {runtime_import(i) for i in imports}
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
        for line in to_linen.field_lines(c, dc)
    ):
        runtime_imports.append(
            Import("dataclasses", None, None if dc == "dataclasses" else dc)
        )
    spec = dataclasses.replace(spec, fingerprint=fingerprint(spec, env))
    if _is_nnx_file(spec):
        nnx_classes, constants = to_nnx.hoist_defaults(spec.classes)  # type: ignore[arg-type]
        classes: Any = ()
        contexts = [to_nnx.class_context(c) for c in nnx_classes]
        template_name = to_nnx.MODULE_TEMPLATE
    else:
        classes, constants = to_linen.hoist_defaults(spec.classes)  # type: ignore[arg-type]
        contexts = [to_linen.class_context(c, dc) for c in classes]
        template_name = to_linen.MODULE_TEMPLATE
    context = {
        "constants": constants,
        "spec": spec,
        "import_lines": import_lines(runtime_imports),
        "type_checking_lines": import_lines(tc_imports),
        "classes": contexts,
        "noqa": "",
    }
    template = env.get_template(template_name)
    nn = aliases.get("nn") if classes else None

    def render(noqa: str) -> str:
        text = template.render(**{**context, "noqa": noqa})
        if nn is not None:
            # A class body binds `nn` (a field): flax.linen is imported as `nn`'s alias.
            text = to_linen.rebase_classes(text, classes, nn)
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
