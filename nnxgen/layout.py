"""Line layout that matches ``ruff format`` for the few shapes nnxgen emits.

Generated code consists of bracketed sequences (calls, tuples, dicts,
parameter lists). Ruff lays one out flat when it fits in 88 columns; otherwise
it puts the contents on one indented line between the brackets when that
fits; otherwise one element per line with a trailing comma, recursively.
"""

from __future__ import annotations

import dataclasses

LINE_LENGTH = 88
INDENT = "    "


@dataclasses.dataclass
class Seq:
    open: str  # text up to and including the opening bracket, e.g. "_rt.call("
    items: list[str | Seq]
    close: str  # closing bracket, e.g. ")"
    single_comma: bool = False  # a one-element tuple keeps its comma when flat
    explode: bool = False  # never hug (import lists: one name per line when split)

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


def _fits(line: str) -> bool:
    return len(line) <= LINE_LENGTH


def lay_out(indent: str, head: str, seq: Seq, tail: str = "") -> list[str]:
    """Lines for ``head + seq + tail`` at ``indent`` (head precedes seq.open)."""
    flat = f"{indent}{head}{seq.flat()}{tail}"
    if _fits(flat):
        return [flat]
    inner_indent = indent + INDENT
    first = f"{indent}{head}{seq.open}"
    last = f"{indent}{seq.close}{tail}"
    if seq.items and not seq.explode:
        hugged = inner_indent + ", ".join(
            i if isinstance(i, str) else i.flat() for i in seq.items
        )
        if seq.single_comma and len(seq.items) == 1:
            hugged += ","
        if _fits(hugged):
            return [first, hugged, last]
    lines = [first]
    for item in seq.items:
        if isinstance(item, str):
            lines.append(f"{inner_indent}{item},")
        else:
            lines.extend(lay_out(inner_indent, "", item, ","))
    lines.append(last)
    return lines


def docstring(text: str, indent: str) -> list[str]:
    """A docstring literal as ruff formats it."""
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
    if lines[-1].endswith('"'):
        lines[-1] += " "
    raw = text.split("\n")  # line for line with ``lines``; whitespace unescaped
    indents = [len(r) - len(r.lstrip()) for r, x in zip(raw, lines) if x]
    if lines[0] and (indents[0] > 0 or min(indents[1:], default=0) > 0):
        # The first line is indented, or every later line is indented relative
        # to it (the source put the summary on its own line): keep it on a line
        # of its own, or the common indentation that ``inspect.cleandoc`` strips
        # from the later lines (and the first line's own) would be lost.
        lines.insert(0, "")
    elif len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out.extend(f"{indent}{line}" if line else "" for line in lines[1:])
    out.append(f'{indent}"""')
    return out
