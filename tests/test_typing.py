"""Type checking of generated files and of nnxgen as users see it.

* pyright: no error in a generated file that the NNX source's own line lacks
  (tests/typecheck.py), on the golden examples, all flax.nnx layers and the
  awkward-signature package -- on whichever stack this venv runs.
* mypy: nnxgen ships ``py.typed``; with nnxgen installed from its wheel (not
  editable), mypy on a user file importing a generated wrapper passes, and sees
  the wrapper's field types. ``mypy --strict`` passes on the runtime and on the
  generated examples.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
from flax import nnx

from nnxgen import config, generate
from tests.helpers import ROOT, tool
from tests.typecheck import new_mypy_errors, new_pyright_errors

CFG = config.load(ROOT)
assert CFG is not None
OUTPUTS = {o.path: o.targets for o in CFG.outputs}
FIXTURES = ROOT / "tests" / "fixtures"


pytestmark = pytest.mark.slow  # pyright / mypy runs, a wheel build


def _module_file(target: str) -> Path:
    spec = importlib.util.find_spec(target.split(":")[0])
    assert spec is not None and spec.origin, target
    return Path(spec.origin)


def _fmt(errors) -> str:
    return "\n".join(map(str, errors))


# -- pyright: the rule ----------------------------------------------------------


def test_golden_examples_add_no_pyright_error():
    sources = [_module_file(t) for targets in OUTPUTS.values() for t in targets]
    errors = new_pyright_errors(sorted(OUTPUTS), sources)
    assert not errors, _fmt(errors)


def test_flax_layers_add_no_pyright_error(wrap):
    from tests.test_flax_layers import LAYERS

    L = wrap(*[f"flax.nnx:{name}" for name in LAYERS])
    sources = sorted({inspect.getsourcefile(getattr(nnx, name)) for name in LAYERS})
    d = Path(L.__file__).parent
    errors = new_pyright_errors(L.__file__, sources, cwd=d)
    assert not errors, _fmt(errors)


def test_awkward_signatures_add_no_pyright_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nasty_linen.py").write_text(
        generate.generate(["nastypkg.models"], "nasty_linen.py")
    )
    sources = sorted((FIXTURES / "nastypkg").glob("*.py"))
    errors = new_pyright_errors(
        "nasty_linen.py", sources, cwd=tmp_path, extra_paths=(FIXTURES,)
    )
    assert not errors, _fmt(errors)


TYPOS = '''
from flax import nnx


class Typo(nnx.Module):
    def __init__(self, n: int = "three", *, rngs: nnx.Rngs):
        self.n = n
'''


def test_the_rule_allows_the_sources_errors_and_catches_any_other(tmp_path, monkeypatch):
    """A source error copied into the wrapper is allowed; an error of its own is not."""
    (tmp_path / "typopkg.py").write_text(TYPOS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    gen = tmp_path / "typo_linen.py"
    gen.write_text(generate.generate(["typopkg"], "typo_linen.py"))
    assert 'n: int = "three"' in gen.read_text()
    # pyright flags the copied default in both files: nothing new
    assert new_pyright_errors("typo_linen.py", ["typopkg.py"], cwd=tmp_path) == []
    # ... and an error that only the generated file has is reported
    gen.write_text(gen.read_text() + '\n\nOOPS: int = "not from the source"\n')
    errors = new_pyright_errors("typo_linen.py", ["typopkg.py"], cwd=tmp_path)
    assert [(e.code, e.text) for e in errors] == [
        ('OOPS: int = "not from the source"', '"not from the source"')
    ], _fmt(errors)


# -- mypy -----------------------------------------------------------------------


def mypy(
    *args: str, cwd: Path, python: str | Path | None = None, path: Path | None = None
) -> subprocess.CompletedProcess:
    """mypy as a user runs it; ``path``: MYPYPATH (this checkout, for files outside it:
    mypy cannot follow the import hook of an editable install)."""
    cmd = [tool("mypy"), "--show-error-codes"]
    if python is not None:
        cmd += ["--python-executable", str(python)]
    return subprocess.run(
        [*cmd, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MYPY_FORCE_COLOR": "0", **({"MYPYPATH": str(path)} if path else {})},
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """nnxgen's wheel, built (as pip builds it) from a copy of this checkout."""
    d = tmp_path_factory.mktemp("wheel")
    src = d / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
        ),
    )
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(d), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (whl,) = d.glob("nnxgen-*.whl")
    return whl


def test_the_wheel_ships_py_typed_the_runtime_and_the_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nnxgen").rglob("*.py")}
    assert "nnxgen/py.typed" in names
    assert sources <= names, sorted(sources - names)  # the runtime (package) included
    assert any(n.startswith("nnxgen/templates/") and n.endswith(".jinja") for n in names)


@pytest.fixture(scope="module")
def user_env(wheel, tmp_path_factory):
    """A venv with nnxgen installed from the wheel (non-editable) and this venv's
    jax / flax visible, plus a user project holding a generated wrapper."""
    d = tmp_path_factory.mktemp("user")
    venv = d / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    site = subprocess.run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    p = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    # jax, flax, ... from this venv, *after* the venv's own site-packages (so the
    # wheel's nnxgen wins over this checkout's editable install)
    (Path(site) / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proj = d / "proj"
    shutil.copytree(ROOT / "generated_examples", proj / "generated_examples")
    where = subprocess.run(
        [str(vpy), "-c", "import nnxgen, sys; print(nnxgen.__file__)"],
        cwd=proj, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(site), f"nnxgen imported from {where}, not the wheel"
    return vpy, Path(site), proj


USER_FILE = '''
import jax
import jax.numpy as jnp

from generated_examples.mlp_linen import MLP

model = MLP(din=3, dmid=8, dout=2)
x = jnp.ones((4, 3))
variables = model.init(jax.random.key(0), x, train=False)
y = model.apply(variables, x, train=False)
'''


def _mypy_user_file(user_env, name: str, text: str):
    """mypy on ``text`` written as the user project's ``name``, with the wheel's nnxgen."""
    vpy, _, proj = user_env
    (proj / name).write_text(text)
    return mypy(name, "--cache-dir", str(proj / ".mypy_cache"), cwd=proj, python=vpy)


def test_mypy_on_a_user_file_importing_a_wrapper_with_the_wheel_installed(user_env):
    site = user_env[1]
    ok = _mypy_user_file(user_env, "user.py", USER_FILE)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("Success: no issues found"), ok.stdout

    # mypy really reads the wrapper: a wrongly typed field is an error
    bad = _mypy_user_file(user_env, "user.py", USER_FILE.replace("din=3", 'din="3"'))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert 'Argument "din" to "MLP" has incompatible type "str"; expected "int"' in bad.stdout

    # ... and py.typed is what makes it work: without it, the import is skipped
    (site / "nnxgen" / "py.typed").unlink()
    try:
        no_marker = _mypy_user_file(user_env, "user.py", USER_FILE)
    finally:
        (site / "nnxgen" / "py.typed").touch()
    assert no_marker.returncode == 1, no_marker.stdout
    assert 'Skipping analyzing "nnxgen.runtime": module is installed, but missing library ' \
        "stubs or py.typed marker" in no_marker.stdout  # fmt: skip


USER_FILE_NNX = '''
import jax
import jax.numpy as jnp
from flax import nnx

from generated_examples.linen_mlp_nnx import MLP

model = MLP(dmid=8, dout=2, rngs=nnx.Rngs(0))
model.eval()
x = jnp.ones((4, 3))
y: jax.Array = model(x)
h: jax.Array = model.embed(x, train=True)
reveal_type(model.__call__)
'''


def test_mypy_on_a_user_file_importing_an_nnx_wrapper_of_linen(user_env):
    """The Linen -> NNX direction is typed too: fields, rngs, mode arguments, methods."""
    ok = _mypy_user_file(user_env, "user_nnx.py", USER_FILE_NNX)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    revealed = ok.stdout.replace("jax._src.basearray.Array", "jax.Array")
    assert '"def (x: jax.Array, train: bool | None =) -> jax.Array"' in revealed, ok.stdout
    for old, new, message in [
        ('dmid=8', 'dmid="8"', 'Argument "dmid" to "MLP" has incompatible type "str"; expected "int"'),
        (", rngs=nnx.Rngs(0)", "", 'Missing named argument "rngs" for "MLP"'),
        ("train=True", 'train="yes"', 'Argument "train" to "embed" of "MLP" has incompatible type "str"'),
    ]:  # fmt: skip
        bad = _mypy_user_file(user_env, "user_nnx.py", USER_FILE_NNX.replace(old, new))
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert message in bad.stdout, bad.stdout


RUNTIME = "nnxgen/runtime" if (ROOT / "nnxgen" / "runtime").is_dir() else "nnxgen/runtime.py"


def test_mypy_strict_on_the_runtime():
    res = mypy("--strict", RUNTIME, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("Success: no issues found"), res.stdout


def test_mypy_strict_on_the_generated_examples():
    """No error in a generated file that its NNX source's line lacks (as for pyright);
    errors inside the NNX sources themselves (mypy follows the imports) are theirs."""
    res = mypy("--strict", *sorted(OUTPUTS), cwd=ROOT)
    assert "error:" in res.stdout or res.returncode == 0, res.stdout + res.stderr
    errors = new_mypy_errors(res.stdout, [ROOT / p for p in OUTPUTS])
    assert not errors, _fmt(errors) + "\n\n" + res.stdout


def test_the_mypy_rule_allows_the_sources_errors_and_catches_any_other(tmp_path, monkeypatch):
    (tmp_path / "typopkg.py").write_text(TYPOS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    gen = tmp_path / "typo_linen.py"
    gen.write_text(generate.generate(["typopkg"], "typo_linen.py"))
    res = mypy("--strict", "typo_linen.py", cwd=tmp_path, path=ROOT)
    assert 'Incompatible default for parameter "n"' in res.stdout, res.stdout  # the source's
    assert new_mypy_errors(res.stdout, [gen], cwd=tmp_path) == [], res.stdout
    gen.write_text(gen.read_text() + '\n\nOOPS: int = "not from the source"\n')
    res = mypy("--strict", "typo_linen.py", cwd=tmp_path, path=ROOT)
    errors = new_mypy_errors(res.stdout, [gen], cwd=tmp_path)
    assert [e.code for e in errors] == ['OOPS: int = "not from the source"'], res.stdout


def test_the_strict_run_type_checks_something(tmp_path):
    """mypy --strict is not vacuous here: an untyped def in a checked file fails."""
    d = tmp_path
    (d / "probe_linen.py").write_text(
        textwrap.dedent(
            """
            import nnxgen.runtime as _rt

            def f(x):
                return _rt.is_wrapper(x)
            """
        )
    )
    res = mypy("--strict", str(d / "probe_linen.py"), cwd=ROOT, path=ROOT)
    assert res.returncode == 1
    assert "Function is missing a type annotation" in res.stdout, res.stdout
