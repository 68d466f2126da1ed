"""The last stage: ruff itself lays out the file, with the configuration of the
project it is written into.

The renderer emits plain code (each statement, signature and call on one line,
imports one statement each, in no particular order). :func:`finish` then runs
the ``ruff`` of nnxgen's environment on it, as the user's own ``ruff`` would see
the file at its output path (``--stdin-filename``: ruff finds the
``pyproject.toml`` / ``ruff.toml`` that governs that path, whatever the working
directory):

1. ``ruff check --select I001 --fix-only``: import sections in the project's
   isort order (``known-first-party``, ``src``, ``force-sort-within-sections``…);
2. ``ruff format``: line length, quote style, indent width, magic trailing
   commas, docstring code… exactly as ``ruff format --check`` wants them;
3. ``ruff check --select`` :data:`COPIED_SPELLING_RULES`: the rules the source's
   own spellings, copied verbatim, trigger (``Optional[X]``: UP045, ``dict()``:
   C408, …) become the file's ``# ruff: noqa:`` line. With that line in place,
   ``ruff check --fix-only --fixable RUF100`` under the project's configuration
   drops the codes its ``RUF100`` (when enabled) calls unused or non-enabled.

The output is a function of the spec, the templates, the ruff version and the
project's ruff configuration: byte-identical for those, and ``nnxgen check``
regenerates it the same way. Working directory of the ruff runs: the directory
of the nearest ``pyproject.toml`` / ``ruff.toml`` / ``.ruff.toml`` above the
output (ruff's project root there), else the current one (where ruff, with no
configuration, looks for first-party modules).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

#: Rules that annotations and defaults copied verbatim may trigger; the ones
#: ruff reports on the file are listed in its file-level noqa line.
COPIED_SPELLING_RULES = ("C408", "F821", "UP006", "UP007", "UP035", "UP037", "UP045")

_CONFIG_FILES = ("pyproject.toml", "ruff.toml", ".ruff.toml")
_NOQA_RE = re.compile(r"^# ruff: noqa: (.*)$", re.MULTILINE)


class FormatError(ValueError):
    pass


@functools.cache
def ruff_bin() -> str:
    """The ruff executable of the ``ruff`` package nnxgen depends on (else PATH's)."""
    try:
        from ruff.__main__ import find_ruff_bin  # optional: else PATH's ruff

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        if found is None:
            raise FormatError(
                "nnxgen formats its output with ruff, which is not installed: "
                "pip install ruff"
            ) from None
        return found


def project_dir(output: Path) -> Path:
    """The directory ruff runs in for ``output`` (see the module docstring)."""
    for d in output.parents:
        if any((d / name).is_file() for name in _CONFIG_FILES):
            return d
    return Path.cwd()


class Ruff:
    """ruff runs on text that will be written to ``output``."""

    def __init__(self, output: str | Path) -> None:
        self.path = Path(output).absolute()
        self.cwd = project_dir(self.path)

    def _run(self, args: list[str], text: str) -> str:
        cmd = [ruff_bin(), *args, "--no-cache", "--stdin-filename", str(self.path), "-"]
        try:
            # bytes: a project's `line-ending = "cr-lf"` survives (no newline translation)
            res = subprocess.run(
                cmd, input=text.encode(), cwd=self.cwd, capture_output=True, check=False
            )
        except OSError as err:
            raise FormatError(f"cannot run {cmd[0]}: {err}") from None
        if res.returncode != 0:
            why = (res.stderr or res.stdout).decode(errors="replace").strip()
            raise FormatError(
                f"ruff {args[0]} failed on the generated text for {self.path} "
                f"(exit {res.returncode}): {why}"
            )
        return res.stdout.decode()

    def format(self, text: str) -> str:
        """Imports sorted, then the file formatted, as the project's ruff wants."""
        text = self._run(
            ["check", "--fix-only", "--exit-zero", "--select", "I001"], text
        )
        return self._run(["format"], text)

    def copied_spelling_codes(self, text: str) -> list[str]:
        out = self._run(
            [
                "check",
                "--exit-zero",
                "--output-format",
                "json",
                "--select",
                ",".join(COPIED_SPELLING_RULES),
            ],
            text,
        )
        return sorted({d["code"] for d in json.loads(out)} & set(COPIED_SPELLING_RULES))

    def kept_noqa_codes(self, text: str) -> list[str]:
        """The codes of ``text``'s ``# ruff: noqa:`` line that the project's own
        RUF100 (if it enables it) keeps."""
        fixed = self._run(
            ["check", "--fix-only", "--exit-zero", "--fixable", "RUF100"], text
        )
        m = _NOQA_RE.search(fixed)
        return [c.strip() for c in m.group(1).split(",") if c.strip()] if m else []


def finish(render: Callable[[str], str], output: str | Path) -> str:
    """The final text: ``render(noqa_codes)`` (the template's text for a
    ``# ruff: noqa:`` line, "" for none) laid out by the project's ruff."""
    ruff = Ruff(output)
    text = ruff.format(render(""))
    codes = ruff.copied_spelling_codes(text)
    if not codes:
        return text
    with_codes = ruff.format(render(", ".join(codes)))
    kept = ruff.kept_noqa_codes(with_codes)
    if kept == codes:
        return with_codes
    return ruff.format(render(", ".join(kept))) if kept else text
