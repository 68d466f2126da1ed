"""Generation on real third-party NNX packages (issue 13's corpus).

For each package (bijx, nnx-ppo, mamba3-jax, lpips-nnx; heal-swin-nnx where
it is importable: it needs Python >= 3.12), every module that defines NNX
classes is wrapped into one file (``nnxgen wrap pkg.mod``), and:

- every NNX class of the package is wrapped, the file imports, each wrapper
  names its NNX class and its field defaults are the NNX signature's defaults;
- ``ruff check`` and ``ruff format --check`` pass (one run per package);
- pyright reports no error on a generated file that it does not also report on
  the NNX source line the copied annotation or default came from (jax's own
  stubs reject some source spellings, e.g. ``dtype: jnp.dtype = jnp.float32``):
  pyright runs once on the generated files and once on the package's sources,
  and each generated error is matched to a source error with the same rule,
  message and flagged text, on a source line of the same parameter.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, ruff, same, tool

PACKAGES = ["bijx", "nnx_ppo", "mamba3_jax", "lpips_nnx", "heal_swin_nnx"]

#: Modules that cannot be imported without optional extras of their package
#: (tests and examples needing simulators): skipped, by the name of the
#: missing distribution's module.
OPTIONAL_IMPORTS = {
    "flowjax": "bijx.flowjax bridges to the optional flowjax package",
    "mujoco_playground": "nnx-ppo's environment tests need MuJoCo Playground",
    "playground": "nnx-ppo's environment tests need MuJoCo Playground",
}

#: NNX classes that may not wrap yet: {"pkg.mod:Class": "reason"}. Empty: all wrap.
KNOWN_FAILURES: dict[str, str] = {}


pytestmark = pytest.mark.slow  # third-party corpus, pyright on it


def _package_modules(pkg: str) -> tuple[list, dict[str, str]]:
    """(modules defining concrete NNX classes, {skipped module: reason})."""
    from flax import nnx

    root = importlib.import_module(pkg)
    names = [pkg] + [m.name for m in pkgutil.walk_packages(root.__path__, pkg + ".")]
    mods, skipped = [], {}
    for name in sorted(names):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as err:
            top = (err.name or "").split(".")[0]
            if top in OPTIONAL_IMPORTS:
                skipped[name] = OPTIONAL_IMPORTS[top]
                continue
            raise
        if any(
            isinstance(c, type)
            and issubclass(c, nnx.Module)
            and c.__module__ == name
            and not inspect.isabstract(c)
            for c in vars(mod).values()
        ):
            mods.append(mod)
    return mods, skipped


def _pyright_json(files: list[str], cwd: Path, extra_paths: list[str]) -> list[dict]:
    config = {"typeCheckingMode": "basic", "extraPaths": [str(ROOT), *extra_paths]}
    (cwd / "pyrightconfig.json").write_text(json.dumps(config))
    res = subprocess.run(
        [tool("pyright"), "--pythonpath", sys.executable, "--outputjson", *files],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,  # exit 1 when it reports errors: those are read below
    )
    data = json.loads(res.stdout)
    return [d for d in data["generalDiagnostics"] if d["severity"] == "error"]


def _flagged_text(lines: list[str], rng: dict) -> str:
    start, end = rng["start"], rng["end"]
    if start["line"] != end["line"]:
        return lines[start["line"]][start["character"] :].strip()
    return lines[start["line"]][start["character"] : end["character"]]


_PARAM = re.compile(r"^\s*\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _key(diag: dict, lines: list[str]) -> tuple[str, str, str]:
    return diag.get("rule", ""), diag["message"], _flagged_text(lines, diag["range"])


@pytest.fixture(scope="module", params=PACKAGES)
def corpus(request, tmp_path_factory):
    pkg = request.param
    try:
        importlib.import_module(pkg)
    except ImportError as err:
        why = (
            " (it needs Python >= 3.12 and jax >= 0.11)"
            if pkg == "heal_swin_nnx"
            else ""
        )
        pytest.skip(f"{pkg} cannot be imported here: {err}{why}")
    from nnxgen import generate
    from nnxgen.codegen import targets

    mods, skipped = _package_modules(pkg)
    d = tmp_path_factory.mktemp(f"corpus_{pkg}")
    sys.path.insert(0, str(d))
    old = Path.cwd()
    os.chdir(d)
    files: dict[str, tuple[str, list]] = {}
    failures: dict[str, str] = {}
    try:
        for mod in mods:
            resolved = targets.resolve(mod.__name__)
            out = f"w_{mod.__name__.replace('.', '_')}.py"
            try:
                text = generate.generate([mod.__name__], out)
            except Exception as err:  # noqa: BLE001 - reported per class below
                for t in resolved:
                    try:
                        generate.generate([t.text], out)
                    except Exception as cls_err:  # noqa: BLE001
                        failures[t.text] = f"{type(cls_err).__name__}: {cls_err}"
                if not any(t.text in failures for t in resolved):
                    failures[mod.__name__] = f"{type(err).__name__}: {err}"
                continue
            (d / out).write_text(text)
            files[out] = (mod.__name__, resolved)
    finally:
        os.chdir(old)
    importlib.invalidate_caches()
    yield pkg, d, files, failures, skipped
    sys.path.remove(str(d))


def test_every_class_wraps_and_imports(corpus):
    from nnxgen import runtime

    pkg, _, files, failures, skipped = corpus
    unexpected = {k: v for k, v in failures.items() if k not in KNOWN_FAILURES}
    assert not unexpected, "\n".join(f"{k}: {v}" for k, v in unexpected.items())
    n = 0
    for out, (_, resolved) in files.items():
        mod = importlib.import_module(out[:-3])
        for t in resolved:
            wrapper = getattr(mod, t.wrapper_name)
            assert runtime.nnx_class_of(wrapper) is t.cls
            fields = wrapper.__dataclass_fields__
            try:
                sig = inspect.signature(t.cls.__init__).parameters
            except (TypeError, ValueError):
                sig = {}
            for p in wrapper.__nnxgen__.params:
                nnx_default = (
                    sig[p.name].default if p.name in sig else inspect.Parameter.empty
                )
                f = fields[p.field]
                if p.kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
                    continue
                if nnx_default is inspect.Parameter.empty:
                    continue
                value = f.default
                if f.default_factory is not dataclasses.MISSING:
                    value = f.default_factory()
                assert same(value, nnx_default), (t.text, p.name, value, nnx_default)
            n += 1
    assert n > 0
    print(
        f"{pkg}: {n} classes wrapped in {len(files)} files; skipped modules: {skipped}"
    )


def test_ruff_check_and_format(corpus):
    _, d, files, _, _ = corpus
    names = sorted(files)
    lint = ruff("check", "--isolated", "--no-cache", *names, cwd=d)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = ruff("format", "--isolated", "--check", "--no-cache", *names, cwd=d)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_no_pyright_error_its_source_lacks(corpus):
    pkg, d, files, _, _ = corpus
    gen_errors = _pyright_json(sorted(files), d, [])
    if not gen_errors:
        return
    # The package's own sources, checked the same way (one run).
    root = Path(importlib.import_module(pkg).__file__).parent
    sources = sorted(
        {inspect.getsourcefile(importlib.import_module(m)) for m, _ in files.values()}
        | {
            inspect.getsourcefile(k)
            for _, resolved in files.values()
            for t in resolved
            for k in t.cls.__mro__
            if k.__module__.startswith(pkg + ".") or k.__module__ == pkg
        }
    )
    src_errors = _pyright_json(sources, d, [str(root.parent)])
    by_key: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    texts: dict[str, list[str]] = {}
    for e in src_errors:
        lines = texts.setdefault(e["file"], Path(e["file"]).read_text().splitlines())
        by_key.setdefault(_key(e, lines), []).append(
            (e["file"], lines[e["range"]["start"]["line"]])
        )
    unexplained = []
    for e in gen_errors:
        lines = texts.setdefault(e["file"], Path(e["file"]).read_text().splitlines())
        line = lines[e["range"]["start"]["line"]]
        m = _PARAM.match(line)
        name = m.group(1).rstrip("_") if m else None
        candidates = by_key.get(_key(e, lines), [])
        if not any(name is None or re.search(rf"\b{name}\b", s) for _, s in candidates):
            unexplained.append(
                f"{Path(e['file']).name}:{e['range']['start']['line'] + 1}: "
                f"{e['message']} [{e.get('rule', '')}] in: {line.strip()}"
            )
    assert not unexplained, "\n".join(unexplained)
    print(f"{pkg}: {len(gen_errors)} pyright errors, each also on its source line")
