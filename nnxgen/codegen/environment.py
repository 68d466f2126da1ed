"""The jinja2 environment the templates are rendered in: a user's ``--templates``
directory in front of nnxgen's own (the package ``nnxgen.templates``), and the
text of the templates a file is rendered from (part of its fingerprint)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import jinja2


def package_templates() -> Path:
    """``templates/`` as installed (``nnxgen/templates``), or beside a source checkout."""
    try:
        return Path(str(importlib.resources.files("nnxgen.templates")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent.parent / "templates"


def environment(user_dir: str | Path | None = None) -> jinja2.Environment:
    """The environment, with ``user_dir``'s templates first when given."""
    loaders: list[jinja2.BaseLoader] = []
    if user_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(user_dir)))
    loaders.append(jinja2.FileSystemLoader(str(package_templates())))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def template_sources(env: jinja2.Environment, names: tuple[str, ...]) -> str:
    """The text of the templates a file is rendered from (part of the fingerprint)."""
    parts = []
    for name in sorted(names):
        src, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        parts.append(f"{name}\n{src}")
    return "\n".join(parts)
