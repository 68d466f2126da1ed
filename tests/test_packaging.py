"""nnxgen as a user's project gets it: sdist, wheel, editable install, type checkers.

* The sdist holds what a rebuild needs: a wheel built from the unpacked sdist has the
  files, bytes and metadata of the wheel built from the checkout.
* The wheel installs into a fresh venv and generates, checks and runs a wrapper from
  another folder, with the templates and runtime it ships.
* pyright and mypy resolve ``nnxgen.runtime`` from a user file importing a generated
  wrapper, for the wheel and for the README's editable install (setuptools' strict
  mode: a plain path entry); the default editable mode's import hook is invisible to
  pyright, which is why the README does not use it.

The venvs are made without pip (pip runs from this venv with ``--python``) and see
this venv's jax / flax / ... through a ``.pth`` after their own site-packages, so the
installed nnxgen, not this checkout, is what they import. Builds are isolated (pip
installs setuptools into each build environment, from its cache or the index).
"""

from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import nnxgen
from tests.helpers import ROOT, tool

slow = pytest.mark.slow  # all but the git-ignore check: builds, venvs, type checkers

#: The editable install the README and scripts/test.sh use.
EDITABLE = ("--config-settings", "editable_mode=strict")


def _run(cmd, *, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [str(c) for c in cmd],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, f"{cmd}\n{p.stdout}\n{p.stderr}"
    return p


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH into this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PRE_COMMIT")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """A copy of this checkout without venvs, builds and caches (what a clone has)."""
    d = tmp_path_factory.mktemp("src") / "nnxgen"
    shutil.copytree(
        ROOT,
        d,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
        ),
    )
    return d


@pytest.fixture(scope="module")
def dists(src, tmp_path_factory) -> dict[str, Path]:
    """``python -m build``: the sdist, the wheel built from the unpacked sdist (build's
    default), and a wheel built straight from the tree."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "-o", out / "via_sdist", src])
    _run([sys.executable, "-m", "build", "--wheel", "-o", out / "direct", src])
    (sdist,) = (out / "via_sdist").glob("nnxgen-*.tar.gz")
    (from_sdist,) = (out / "via_sdist").glob("nnxgen-*.whl")
    (direct,) = (out / "direct").glob("nnxgen-*.whl")
    return {"sdist": sdist, "wheel_from_sdist": from_sdist, "wheel": direct}


def _wheel_files(whl: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(whl) as z:
        return {n: z.read(n) for n in z.namelist()}


@slow
def test_the_sdist_holds_what_a_rebuild_needs(dists):
    with tarfile.open(dists["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    expected = {
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "nnxgen/py.typed",
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "nnxgen").rglob("*.py")),
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "templates").glob("*.jinja")),
    }
    assert expected <= names, sorted(expected - names)
    # no half a test suite (test_*.py without their helpers and fixtures)
    assert not [n for n in names if n.startswith("tests/")], sorted(names)

    # the wheel rebuilt from the unpacked sdist is the wheel built from the checkout
    rebuilt, direct = (
        _wheel_files(dists["wheel_from_sdist"]),
        _wheel_files(dists["wheel"]),
    )
    assert sorted(rebuilt) == sorted(direct)
    record = next(n for n in direct if n.endswith(".dist-info/RECORD"))
    differ = [n for n in direct if n != record and rebuilt[n] != direct[n]]
    assert not differ, differ


@slow
def test_the_wheel_ships_the_package_templates_entry_point_and_metadata(dists):
    files = _wheel_files(dists["wheel"])
    names = set(files)
    assert {n.split("/")[0] for n in names} == {
        "nnxgen",
        f"nnxgen-{nnxgen.__version__}.dist-info",
    }
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nnxgen").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    templates = {
        f"nnxgen/templates/{p.name}" for p in (ROOT / "templates").glob("*.jinja")
    }
    assert templates and templates <= names, sorted(templates - names)
    assert "nnxgen/py.typed" in names
    info = f"nnxgen-{nnxgen.__version__}.dist-info"
    assert "nnxgen = nnxgen.cli:main" in files[f"{info}/entry_points.txt"].decode()

    meta = email.message_from_bytes(files[f"{info}/METADATA"])
    assert meta["Version"] == nnxgen.__version__
    assert meta["Requires-Python"] == ">=3.11"
    requires = meta.get_all("Requires-Dist")
    for req in ("jax>=0.10.2", "flax>=0.12.8", 'kauldron>=1.4.2; extra == "kauldron"'):
        assert req in requires, requires
    assert "kauldron" in meta.get_all("Provides-Extra")
    assert meta.get_payload().startswith("# nnxgen"), "README is the long description"


def _venv(d: Path) -> tuple[Path, Path]:
    """A venv without pip whose site-packages sees this venv's packages after its own."""
    _run([sys.executable, "-m", "venv", "--without-pip", d])
    vpy = d / "bin" / "python"
    site = Path(
        _run(
            [vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # console scripts of those packages (ruff's binary, which the generator runs) are
    # where a normal install of nnxgen's dependencies puts them: the venv's bin/
    for name in ("ruff",):
        exe = Path(sysconfig.get_paths()["scripts"]) / name
        if exe.exists():
            (d / "bin" / name).symlink_to(exe)
    return vpy, site


def _pip_install(vpy: Path, *args) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            vpy,
            "install",
            "-q",
            "--no-deps",
            *args,
        ]
    )


MODELS = '''
import jax
from flax import nnx


class Net(nnx.Module):
    """One linear layer."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)
'''

USE = """
import jax
import jax.numpy as jnp

from mypkg.net_linen import Net

model = Net(din=3, dout=2)
x = jnp.ones((4, 3))
variables = model.init(jax.random.key(0), x)
y = model.apply(variables, x, train=False)
"""


def _project(d: Path) -> Path:
    """A user's project: a package with an NNX model, configured outputs."""
    (d / "mypkg").mkdir(parents=True)
    (d / "mypkg" / "__init__.py").write_text("")
    (d / "mypkg" / "models.py").write_text(MODELS)
    (d / "pyproject.toml").write_text(
        '[tool.nnxgen.outputs]\n"mypkg/net_linen.py" = ["mypkg.models:Net"]\n'
    )
    (d / "use.py").write_text(USE)
    return d


@pytest.fixture(scope="module")
def wheel_env(dists, tmp_path_factory):
    d = tmp_path_factory.mktemp("wheel_env")
    vpy, site = _venv(d / "venv")
    _pip_install(vpy, dists["wheel"])
    return vpy, site


@slow
def test_the_wheel_generates_checks_and_runs_from_another_folder(wheel_env, tmp_path):
    vpy, site = wheel_env
    proj = _project(tmp_path / "proj")
    env = _clean_env()
    nnxgen_cli = vpy.parent / "nnxgen"
    _run(
        [nnxgen_cli, "wrap", "mypkg.models:Net", "-o", "mypkg/net_linen.py"],
        cwd=proj,
        env=env,
    )
    text = (proj / "mypkg" / "net_linen.py").read_text()
    assert "@generated" in text and f"nnxgen {nnxgen.__version__}" in text, text[:600]
    assert "import nnxgen.runtime as _rt" in text
    assert "class Net(nn.Module):" in text
    _run([nnxgen_cli, "check"], cwd=proj, env=env)

    probe = textwrap.dedent(
        """
        import runpy, nnxgen, nnxgen.codegen.environment
        print(nnxgen.__file__)
        print(nnxgen.codegen.environment.package_templates())
        runpy.run_path("use.py")
        """
    )
    where, templates = _run([vpy, "-c", probe], cwd=proj, env=env).stdout.split()[:2]
    assert where.startswith(str(site)), f"nnxgen imported from {where}, not the wheel"
    assert templates.startswith(str(site)), f"templates read from {templates}"


@pytest.fixture(scope="module")
def editable_env(src, tmp_path_factory):
    """The README's editable install (strict mode) of a copy of the checkout."""
    d = tmp_path_factory.mktemp("editable_env")
    vpy, site = _venv(d / "venv")
    _pip_install(vpy, *EDITABLE, "-e", src)
    return vpy, site


def test_readme_and_test_script_use_the_checked_editable_install():
    flag = " ".join(EDITABLE)
    assert f"pip install -q -e . {flag}" in (ROOT / "README.md").read_text()
    assert (
        f"EDITABLE=({flag} -e '.[test,typing]')"
        in (ROOT / "scripts" / "test.sh").read_text()
    )


def _user_project_with_wrapper(d: Path) -> Path:
    proj = _project(d)
    from nnxgen import generate

    os.chdir(proj)  # generate() finds mypkg from the current directory
    sys.path.insert(0, str(proj))
    try:
        (proj / "mypkg" / "net_linen.py").write_text(
            generate.generate(["mypkg.models:Net"], "mypkg/net_linen.py")
        )
    finally:
        sys.path.remove(str(proj))
        sys.modules.pop("mypkg.models", None)
        sys.modules.pop("mypkg", None)
        os.chdir(ROOT)
    (proj / "pyrightconfig.json").write_text('{"typeCheckingMode": "basic"}')
    return proj


def _pyright(vpy: Path, proj: Path, *files: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("pyright"), "--pythonpath", str(vpy), *files],
        cwd=proj, capture_output=True, text=True, timeout=600, env=_clean_env(),
        check=False,
    )  # fmt: skip


def _mypy(vpy: Path, proj: Path, *files: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("mypy"), "--show-error-codes", "--python-executable", str(vpy),
         "--cache-dir", str(proj / ".mypy_cache"), *files],
        cwd=proj, capture_output=True, text=True, timeout=900, check=False,
        env=_clean_env(MYPY_FORCE_COLOR="0"),
    )  # fmt: skip


BAD_FIELD = 'Argument "din" to "Net" has incompatible type "str"; expected "int"'


@slow
@pytest.mark.parametrize("install", ["wheel", "editable"])
def test_pyright_and_mypy_resolve_the_runtime(install, request, tmp_path):
    vpy, _ = request.getfixturevalue(f"{install}_env")
    proj = _user_project_with_wrapper(tmp_path / "proj")
    files = ("use.py", "mypkg/net_linen.py")

    ok = _pyright(vpy, proj, *files)
    assert ok.returncode == 0 and "0 errors" in ok.stdout, ok.stdout + ok.stderr
    ok = _mypy(vpy, proj, *files)
    assert ok.returncode == 0 and ok.stdout.startswith("Success"), ok.stdout + ok.stderr

    # both really read the wrapper through the installed runtime: a mistyped field fails
    (proj / "use.py").write_text(USE.replace("din=3", 'din="3"'))
    bad = _pyright(vpy, proj, "use.py")
    assert bad.returncode == 1 and '"din"' in bad.stdout, bad.stdout
    bad = _mypy(vpy, proj, "use.py")
    assert bad.returncode == 1 and BAD_FIELD in bad.stdout, bad.stdout


@slow
def test_the_default_editable_mode_hides_the_runtime_from_pyright(src, tmp_path):
    """Why the README asks for strict mode: setuptools' default editable install of this
    layout (templates/ mapped to nnxgen.templates) is an import hook, not a path."""
    vpy, site = _venv(tmp_path / "venv")
    _pip_install(vpy, "-e", src)
    assert list(site.glob("__editable___nnxgen_*_finder.py")), sorted(os.listdir(site))
    proj = _user_project_with_wrapper(tmp_path / "proj")
    res = _pyright(vpy, proj, "mypkg/net_linen.py")
    assert res.returncode == 1, res.stdout
    assert 'Import "nnxgen.runtime" could not be resolved' in res.stdout, res.stdout


# -- the README's quick start leaves nothing untracked --------------------------------


def test_the_quick_start_output_is_git_ignored():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"nnxgen wrap generated_examples\.mlp:MLP -o (\S+)", readme)
    assert m, "README command 1 not found"
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    res = subprocess.run(
        ["git", "check-ignore", "-q", m[1]], cwd=ROOT, capture_output=True, text=True,
        check=False,
    )
    assert res.returncode == 0, f"{m[1]} (README command 1) is not git-ignored"
