"""pyright's rule for generated files: no error that the NNX source's own line lacks.

Generated files copy annotations and defaults verbatim from the NNX source, so
an error pyright reports on copied text (``dtype: jnp.dtype = jnp.float32``
under jax >= 0.12's stubs, where ``jnp.float32`` is typed ``_ScalarType``) is
the source author's, and pyright reports it on the source line too. What nnxgen
must never do is add an error of its own. :func:`new_pyright_errors` runs
pyright once on a generated file and its NNX sources and returns the errors of
the generated file that no source error matches: same message, same flagged
text, on a line of code that contains the generated one (ignoring indentation
and a trailing comma).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT, tool


@dataclass(frozen=True)
class Diagnostic:
    file: Path
    line: int  # 0-based, as pyright reports it
    message: str
    rule: str
    text: str  # the flagged source text
    code: str  # the flagged line, stripped, without a trailing comma

    def __str__(self) -> str:
        return f"{self.file}:{self.line + 1}: {self.message} [{self.rule}] -- {self.code!r}"


# pyright words one type error differently for a class field and for a
# parameter default: ``x: T = v`` is the same assignment in both.
_SAME_ERROR = [
    (re.compile(r'^Type "(.*)" is not assignable to declared type "(.*)"$'), "assign"),
    (re.compile(r'^Expression of type "(.*)" cannot be assigned to parameter of type "(.*)"$'), "assign"),
]


def _normalised(message: str) -> str:
    first, _, rest = message.partition("\n")
    for pattern, kind in _SAME_ERROR:
        if m := pattern.match(first):
            first = f"{kind}: {m[1]} -> {m[2]}"
            break
    return first + "\n" + rest


def _code(line: str) -> str:
    return line.strip().removesuffix(",").strip()


def pyright_errors(
    *files: str | Path, cwd: Path = ROOT, extra_paths: tuple = ()
) -> list[Diagnostic]:
    """pyright (basic mode, this venv's packages) errors in ``files``."""
    if Path(cwd) != ROOT:
        config = {"extraPaths": [str(ROOT), *map(str, extra_paths)], "typeCheckingMode": "basic"}
        (Path(cwd) / "pyrightconfig.json").write_text(json.dumps(config))
    p = subprocess.run(
        [tool("pyright"), "--outputjson", "--pythonpath", sys.executable, *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report = json.loads(p.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"pyright gave no JSON (exit {p.returncode}):\n{p.stdout}\n{p.stderr}") from e
    out = []
    lines: dict[Path, list[str]] = {}
    for d in report["generalDiagnostics"]:
        if d["severity"] != "error":
            continue
        path = Path(d["file"]).resolve()
        text_lines = lines.setdefault(path, path.read_text().splitlines())
        start, end = d["range"]["start"], d["range"]["end"]
        if start["line"] == end["line"]:
            text = text_lines[start["line"]][start["character"] : end["character"]]
        else:
            text = "\n".join(text_lines[start["line"] : end["line"] + 1])
        out.append(
            Diagnostic(
                path,
                start["line"],
                d["message"],
                d.get("rule", ""),
                text,
                _code(text_lines[start["line"]]),
            )
        )
    # every file pyright was asked about was analysed (no silent zero-error run)
    assert report["summary"]["filesAnalyzed"] >= len(files), report["summary"]
    return out


def new_pyright_errors(
    generated: str | Path | list[str | Path],
    sources: list[str | Path],
    *,
    cwd: Path = ROOT,
    extra_paths: tuple = (),
) -> list[Diagnostic]:
    """Errors in the ``generated`` file(s) that no error in the NNX ``sources`` accounts for.

    An error is accounted for by a source error with the same (normalised)
    message on the same flagged text, in a source line containing the generated
    line's code. Files under a hidden directory (a ``.venv``) are copied first:
    pyright does not analyse those even when named.
    """
    gens = {
        (Path(cwd) / g).resolve()
        for g in (generated if isinstance(generated, list) else [generated])
    }
    srcs = set()
    for s in sources:
        path = (Path(cwd) / s).resolve()
        if any(part.startswith(".") for part in path.parts):
            copy = Path(cwd) / "_pyright_sources" / "_".join(path.parts[-3:])
            copy.parent.mkdir(exist_ok=True)
            copy.write_text(path.read_text())
            path = copy.resolve()
        srcs.add(path)
    diags = pyright_errors(*sorted(gens), *sorted(srcs), cwd=cwd, extra_paths=extra_paths)

    known: dict[tuple[str, str], list[str]] = {}
    for d in diags:
        if d.file in srcs:
            known.setdefault((_normalised(d.message), d.text), []).append(d.code)

    def accounted(d: Diagnostic) -> bool:
        # the generated line (a field, a parameter) is part of the source's line
        # (which may hold the whole signature)
        return any(d.code in code for code in known.get((_normalised(d.message), d.text), []))

    return [d for d in diags if d.file in gens and not accounted(d)]


# -- mypy: the same rule --------------------------------------------------------

_MYPY_LINE = re.compile(r"^(?P<file>[^:\n]+\.py):(?P<line>\d+): error: (?P<msg>.*?)(?:  \[(?P<code>[\w-]+)\])?$")
_MYPY_SAME = [
    re.compile(r'^Incompatible types in assignment \(expression has type "(.*)", variable has type "(.*)"\)$'),
    re.compile(r'^Incompatible default for parameter "[^"]*" \(default has type "(.*)", parameter has type "(.*)"\)$'),
]


def _mypy_normalised(message: str) -> str:
    for pattern in _MYPY_SAME:
        if m := pattern.match(message):
            return f"assign: {m[1]} -> {m[2]}"
    return message


def mypy_errors(output: str, cwd: Path = ROOT) -> list[Diagnostic]:
    out = []
    lines: dict[Path, list[str]] = {}
    for raw in output.splitlines():
        m = _MYPY_LINE.match(raw)
        if not m:
            continue
        path = (Path(cwd) / m["file"]).resolve()
        text_lines = lines.setdefault(path, path.read_text().splitlines())
        line = int(m["line"]) - 1
        out.append(
            Diagnostic(path, line, m["msg"], m["code"] or "", "", _code(text_lines[line]))
        )
    return out


def new_mypy_errors(
    output: str, generated: list[Path], *, cwd: Path = ROOT
) -> list[Diagnostic]:
    """Errors (in mypy ``output``) in the ``generated`` files that no error of the
    other files mypy checked (the NNX sources it followed) accounts for."""
    gens = {(Path(cwd) / g).resolve() for g in generated}
    diags = mypy_errors(output, cwd)
    known: dict[str, list[str]] = {}
    for d in diags:
        if d.file not in gens:
            known.setdefault(_mypy_normalised(d.message), []).append(d.code)
    return [
        d
        for d in diags
        if d.file in gens
        and not any(d.code in code for code in known.get(_mypy_normalised(d.message), []))
    ]
