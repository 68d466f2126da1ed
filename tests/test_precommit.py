"""pre-commit: the documented configurations match the shipped hook, releases are
tagged as documented, and an import that fails inside a hook says how to fix the hook.

pre-commit sets ``PRE_COMMIT=1`` in a hook's environment; nnxgen's import-failure
errors then name the two fixes (docs/pre-commit.md).
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

import nnxgen
from tests.helpers import ROOT, run_cli

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
