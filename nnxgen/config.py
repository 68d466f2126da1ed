"""``[tool.nnxgen]`` in pyproject.toml: which files to generate from which targets.

    [tool.nnxgen.outputs]
    "mypkg/models_linen.py" = ["mypkg.models"]          # every NNX class in the module
    "mypkg/heads_linen.py" = ["mypkg.heads:Head", "mypkg.heads:Tail=TailWrapper"]

Paths are relative to the directory holding pyproject.toml.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Output:
    path: str  # relative to the project root, posix
    targets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Config:
    root: Path
    outputs: tuple[Output, ...]


def find_pyproject(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load(start: Path | None = None) -> Config | None:
    """The nearest pyproject.toml's ``[tool.nnxgen]``, or None when there is none."""
    path = find_pyproject(start)
    if path is None:
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it ({err})") from None
    section = data.get("tool", {}).get("nnxgen")
    if section is None:
        return None
    outputs_raw = section.get("outputs", {})
    if not isinstance(outputs_raw, dict):
        raise ConfigError(
            f'{path}: [tool.nnxgen] outputs must be a table of "path.py" = ["pkg.module:Class", ...]'
        )
    unknown = set(section) - {"outputs"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown [tool.nnxgen] keys {sorted(unknown)}; only 'outputs' is read"
        )
    outputs = []
    for out, targets in outputs_raw.items():
        if isinstance(targets, str):
            targets = [targets]
        if (
            not isinstance(targets, list)
            or not targets
            or not all(isinstance(t, str) for t in targets)
        ):
            raise ConfigError(
                f'{path}: [tool.nnxgen.outputs] "{out}" must list target strings, e.g. ["pkg.mod:Class"]'
            )
        if not out.endswith(".py"):
            raise ConfigError(
                f'{path}: [tool.nnxgen.outputs] "{out}" must be a .py file'
            )
        outputs.append(Output(Path(out).as_posix(), tuple(targets)))
    return Config(path.parent, tuple(outputs))
