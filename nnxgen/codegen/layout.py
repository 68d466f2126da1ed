"""Code snippets before formatting, and docstring literals.

The renderer builds bracketed sequences (calls, tuples, dicts, parameter lists)
and writes each on one line; ruff lays the file out afterwards with the
configuration of the project it is written into (:mod:`nnxgen.codegen.formatting`).
"""

from __future__ import annotations

import dataclasses
import unicodedata

INDENT = "    "


@dataclasses.dataclass
class Seq:
    open: str  # text up to and including the opening bracket, e.g. "_rt.call("
    items: list[str | Seq]
    close: str  # closing bracket, e.g. ")"
    single_comma: bool = False  # a one-element tuple keeps its comma

    def flat(self) -> str:
        inner = ", ".join(i if isinstance(i, str) else i.flat() for i in self.items)
        if self.single_comma and len(self.items) == 1:
            inner += ","
        return f"{self.open}{inner}{self.close}"


def tuple_of(items: list[str | Seq]) -> Seq:
    return Seq("(", items, ")", single_comma=True)


def dict_of(pairs: list[tuple[str, str | Seq]]) -> Seq:
    items: list[str | Seq] = []
    for key, value in pairs:
        if isinstance(value, str):
            items.append(f"{key}: {value}")
        else:
            items.append(
                Seq(
                    f"{key}: {value.open}", value.items, value.close, value.single_comma
                )
            )
    return Seq("{", items, "}")


def width(text: str) -> int:
    """Columns ``text`` takes, as ruff counts them (East Asian wide characters: 2;
    combining marks, format and control characters: 0). Not used by the generator
    any more (ruff lays lines out); tests/test_fuzz.py measures lines with it."""
    if text.isprintable() and text.isascii():
        return len(text)
    return sum(
        0
        if unicodedata.category(c) in ("Mn", "Me", "Cf", "Cc")
        else 2
        if unicodedata.east_asian_width(c) in ("W", "F")
        else 1
        for c in text
    )


def lay_out(indent: str, head: str, seq: Seq, tail: str = "") -> list[str]:
    """``head + seq + tail`` at ``indent``, on one line (ruff splits it later)."""
    return [f"{indent}{head}{seq.flat()}{tail}"]


def doc_lines(text: str | None, indent: str, *, raw: bool = False) -> str:
    """The joined :func:`docstring` lines of a class or method ("" without one)."""
    return "\n".join(docstring(text, indent, raw=raw)) if text else ""


def docstring(text: str, indent: str, *, raw: bool = False) -> list[str]:
    """A docstring literal as ruff formats it (``raw``: an ``r\"\"\"`` literal,
    as the source wrote it, so ``\\mathcal`` keeps one backslash)."""
    if (
        raw
        and '"""' not in text
        and not text.rstrip(" \t\n").endswith("\\")
        and all(c == "\n" or c.isprintable() for c in text)
    ):  # (a raw literal cannot escape a tab or a form feed, which ruff re-indents)
        body = text
        prefix = "r"
    else:
        prefix = ""
        body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        body = "".join(
            c
            if c == "\n" or c.isprintable()
            else c.encode("unicode_escape").decode("ascii")
            for c in body
        )
    lines = [line.rstrip(" \t") for line in body.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return []
    raw = text.split("\n")  # line for line with ``lines``; whitespace unescaped
    indents = [len(r) - len(r.lstrip()) for r, x in zip(raw, lines) if x]
    if lines[0] and (indents[0] > 0 or min(indents[1:], default=0) > 0):
        # The first line is indented, or every later line is indented relative
        # to it (the source put the summary on its own line): keep it on a line
        # of its own, or the common indentation that ``inspect.cleandoc`` strips
        # from the later lines (and the first line's own) would be lost.
        lines.insert(0, "")
    elif lines[0].startswith('"'):
        lines[0] = " " + lines[0]  # as ruff does: not four quotes in a row
    if len(lines) == 1:
        last = lines[0]
        if last.endswith('"') and (len(last) - len(last[:-1].rstrip("\\"))) % 2:
            last += " "  # an unescaped quote before the closing ones: as ruff does
        return [f'{indent}{prefix}"""{last}"""']
    out = [f'{indent}{prefix}"""{lines[0]}']
    out.extend(f"{indent}{line}" if line else "" for line in lines[1:])
    out.append(f'{indent}"""')
    return out
