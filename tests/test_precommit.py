"""pre-commit: the documented configurations match the shipped hook, the `repo:
local` one works in pre-commit itself, releases are tagged as documented, and an
import that fails inside a hook says how to fix the hook.

pre-commit sets ``PRE_COMMIT=1`` in a hook's environment; nnxgen's import-failure
errors then name the two fixes (docs/pre-commit.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import nnxgen
from tests.helpers import ROOT, run_cli, tool

DOC = ROOT / "docs" / "pre-commit.md"
HINT = (
    "inside pre-commit the isolated nnxgen hook has only nnxgen and its own dependencies: "
    "run it in the project's environment (a `repo: local` hook with `language: system`) "
    "or add the package to the hook's `additional_dependencies` (docs/pre-commit.md)"
)


@pytest.fixture
def project(tmp_path):
    """A user's folder whose model module imports a package that is not installed."""
    (tmp_path / "missing_dep_module.py").write_text(
        "import identify_not_installed_anywhere  # a project dependency\n\n\nclass X:\n    pass\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        '[tool.nnxgen.outputs]\n"x_linen.py" = ["missing_dep_module"]\n'
    )
    return tmp_path


def _env(pre_commit: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PRE_COMMIT"}
    if pre_commit:
        env["PRE_COMMIT"] = "1"
    return env


def _cli(project, *args: str, pre_commit: bool):
    # run_cli merges its env over os.environ: drop an outer PRE_COMMIT for the plain run
    saved = os.environ.pop("PRE_COMMIT", None)
    try:
        return run_cli(*args, cwd=project, env=_env(pre_commit))
    finally:
        if saved is not None:
            os.environ["PRE_COMMIT"] = saved


@pytest.mark.parametrize(
    "args",
    [("wrap", "missing_dep_module:X", "-o", "x_linen.py"), ("check",)],
    ids=["wrap", "check"],
)
def test_a_failed_import_inside_pre_commit_names_both_fixes(project, args):
    res = _cli(project, *args, pre_commit=True)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr  # still one line, no traceback
    assert lines[0].startswith(
        "nnxgen: error: importing 'missing_dep_module' failed: ModuleNotFoundError: "
        "No module named 'identify_not_installed_anywhere'; install the missing package"
    ), lines[0]
    assert lines[0].endswith("; " + HINT), lines[0]
    assert not (project / "x_linen.py").exists()


def test_a_missing_target_module_inside_pre_commit_gets_the_hint(tmp_path):
    res = _cli(
        tmp_path, "wrap", "no_such_models_module:X", "-o", "x.py", pre_commit=True
    )
    assert res.returncode == 1
    assert "no module named 'no_such_models_module'" in res.stderr, res.stderr
    assert res.stderr.strip().endswith(HINT), res.stderr


def test_outside_pre_commit_the_message_has_no_hook_hint(project):
    res = _cli(
        project, "wrap", "missing_dep_module:X", "-o", "x_linen.py", pre_commit=False
    )
    assert res.returncode == 1
    assert res.stderr.strip().endswith(
        "install the missing package or fix the import"
    ), res.stderr
    assert "pre-commit" not in res.stderr


# -- the documented configurations ----------------------------------------------------


def _yaml_blocks() -> list[dict]:
    text = DOC.read_text()
    return [
        yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    ]


def test_the_documented_configs_match_the_shipped_hook():
    (shipped,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    local, isolated = _yaml_blocks()

    (repo,) = local["repos"]
    assert repo["repo"] == "local"
    (hook,) = repo["hooks"]
    assert hook["language"] == "system"
    for key in ("id", "entry", "pass_filenames", "always_run"):
        assert hook[key] == shipped[key], key

    (repo,) = isolated["repos"]
    assert repo["rev"] == f"v{nnxgen.__version__}", (
        "rev: the tag of the current version"
    )
    (hook,) = repo["hooks"]
    assert hook["id"] == shipped["id"]
    assert isinstance(hook["additional_dependencies"], list)


def test_the_current_version_has_a_changelog_section_and_the_tag_scheme_is_documented():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(nnxgen.__version__)}\b", changelog, flags=re.MULTILINE)
    assert f"`v{nnxgen.__version__}`" in changelog
    readme = (ROOT / "README.md").read_text()
    assert "docs/pre-commit.md" in readme and "CHANGELOG.md" in readme


MODEL = '''\
"""A user's model."""

import jax
from flax import nnx


class Head(nnx.Module):
    """A linear head."""

    def __init__(self, din: int, dout: int{extra}, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)
'''


def _git(*args: str, cwd) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_the_documented_local_hook_passes_and_fails_in_real_pre_commit(tmp_path):
    """docs/pre-commit.md's `repo: local` config, as written, in pre-commit itself:
    a current wrapper passes (exit 0); after the model's signature changes the
    commit is refused (exit 1) with the unified diff naming the new parameter."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "heads.py").write_text(MODEL.format(extra=""))
    (project / "pyproject.toml").write_text(
        '[tool.nnxgen.outputs]\n"heads_linen.py" = ["heads"]\n'
    )
    assert run_cli("wrap", "heads", "-o", "heads_linen.py", cwd=project).returncode == 0
    local, _ = _yaml_blocks()
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump(local))
    _git("init", "-q", cwd=project)
    _git("add", "-A", cwd=project)
    _git("commit", "-q", "-m", "wrappers", cwd=project)

    # the project's environment: this venv's nnxgen on PATH (docs: "run pre-commit
    # from the activated venv"); the models import from the repository root
    env = {
        **_env(pre_commit=False),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "PYTHONPATH": str(project),
    }

    def pre_commit() -> subprocess.CompletedProcess:
        return subprocess.run(
            [tool("pre-commit"), "run", "--all-files"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    ok = pre_commit()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(r"nnxgen check .*Passed", ok.stdout), ok.stdout

    (project / "heads.py").write_text(MODEL.format(extra=", bias: bool = True"))
    stale = pre_commit()
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert re.search(r"nnxgen check .*Failed", stale.stdout), stale.stdout
    assert "+    bias: bool = True" in stale.stdout, stale.stdout
    # the hook only reports: the committed wrapper is untouched
    assert "bias" not in (project / "heads_linen.py").read_text()
