"""Messages that end the search: each error says what to do next (issue 21, item 9)."""

from __future__ import annotations

import importlib
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest
from click.testing import CliRunner

from nnxgen.cli import main
from nnxgen.runtime import ModeError

NNX_SOURCE = """
from flax import nnx


class Net(nnx.Module):
    def __init__(self, din: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, 2, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)
"""

LINEN_SOURCE = """
import flax.linen as nn


class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features)(x)
"""


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project dir (cwd, on sys.path) with ``msgpkg/models.py`` and ``msgpkg/linen.py``."""
    (tmp_path / "msgpkg").mkdir()
    (tmp_path / "msgpkg" / "__init__.py").write_text("")
    (tmp_path / "msgpkg" / "models.py").write_text(textwrap.dedent(NNX_SOURCE))
    (tmp_path / "msgpkg" / "linen.py").write_text(textwrap.dedent(LINEN_SOURCE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "msgpkg"]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return tmp_path


def fail(*args: str) -> str:
    """Run nnxgen, expect exit 1 with one line on stderr; return that line."""
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 1, res.output
    err = res.stderr
    assert err.startswith("nnxgen: error: "), err
    assert err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in res.output
    return err


# (a) check with nothing to check --------------------------------------------


def test_check_without_config_says_how_to_give_it_files(proj):
    err = fail("check")
    assert "nothing to check: no files given and no [tool.nnxgen.outputs]" in err
    assert "(no pyproject.toml found)" in err or "pyproject.toml" in err
    assert "pass the generated files (nnxgen check out.py ...)" in err
    assert "nnxgen wrap" not in err  # wrapping is not what check needs


def test_check_with_a_pyproject_but_no_outputs_names_the_file(proj):
    (proj / "pyproject.toml").write_text('[project]\nname = "x"\n')
    err = fail("check")
    assert (
        f'no [tool.nnxgen.outputs] ("out.py" = ["pkg.module:Class"]) in {proj / "pyproject.toml"}'
        in err
    )
    assert "list them in [tool.nnxgen.outputs]" in err


def test_wrap_without_targets_or_config_names_the_outputs_table(proj):
    (proj / "pyproject.toml").write_text("[tool.nnxgen]\n")
    err = fail("wrap")
    assert "no targets given and no [tool.nnxgen.outputs] in" in err
    assert "run nnxgen wrap pkg.module:Class -o out.py" in err


# (b) wrap without -o -----------------------------------------------------------


def test_wrap_without_output_names_the_outputs_table(proj):
    err = fail("wrap", "msgpkg.models:Net")
    assert (
        "give -o OUTPUT.py with targets: nnxgen wrap msgpkg.models:Net -o OUTPUT.py"
        in err
    )
    assert "[tool.nnxgen.outputs]" in err
    assert "[tool.nnxgen])" not in err
    assert sorted(p.name for p in (proj / "msgpkg").iterdir() if p.suffix == ".py") == [
        "__init__.py",
        "linen.py",
        "models.py",
    ]


# (c) -o is the wrapped module's own source ----------------------------------------


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize(
    "target,source,suggested",
    [
        ("msgpkg.models:Net", "models.py", "msgpkg/models_linen.py"),
        ("msgpkg.models", "models.py", "msgpkg/models_linen.py"),
        ("msgpkg.models.Net", "models.py", "msgpkg/models_linen.py"),
        ("msgpkg.linen:Block", "linen.py", "msgpkg/linen_nnx.py"),
    ],
)
def test_output_that_is_the_source_is_refused_even_with_force(
    proj, target, source, suggested, force
):
    path = proj / "msgpkg" / source
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    out = f"msgpkg/{source}"
    err = fail("wrap", target, "-o", out, *(["--force"] if force else []))
    assert f"-o {out} is the source of " in err
    assert "cannot replace it" in err
    assert f"e.g. -o {suggested}" in err
    assert "--force" not in err  # no advice that would not help
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert not list((proj / "msgpkg").glob(f".{source}.*"))  # no temp file left


def test_output_that_is_the_source_by_another_spelling_is_refused(proj):
    path = proj / "msgpkg" / "models.py"
    before = path.read_bytes()
    err = fail(
        "wrap",
        "msgpkg.models:Net",
        "-o",
        str(proj / "msgpkg" / ".." / "msgpkg" / "models.py"),
        "--force",
    )
    assert "is the source of msgpkg.models:Net" in err
    assert path.read_bytes() == before


def test_output_next_to_the_source_still_works(proj):
    res = CliRunner().invoke(
        main, ["wrap", "msgpkg.models:Net", "-o", "msgpkg/models_linen.py"]
    )
    assert res.exit_code == 0, res.output
    assert (
        (proj / "msgpkg" / "models_linen.py")
        .read_text()
        .startswith("# @generated by nnxgen")
    )


# (d) a misspelt class -----------------------------------------------------------


@pytest.mark.parametrize(
    "target,suggestion",
    [
        ("msgpkg.models:Nett", "did you mean 'Net'?"),
        ("msgpkg.models:net", "did you mean 'Net'?"),
        ("msgpkg.models.Nte", "did you mean 'Net'?"),
        ("flax.nnx:BatchNom", "did you mean 'BatchNorm'?"),
        ("flax.nnx:Linaer", "'Linear'"),
    ],
)
def test_misspelt_class_gets_did_you_mean(proj, target, suggestion):
    err = fail("wrap", target, "-o", "out.py")
    assert "has no attribute" in err
    assert suggestion in err
    assert not (proj / "out.py").exists()


def test_unrelated_name_gets_no_guess(proj):
    err = fail("wrap", "msgpkg.models:Zzzzzz", "-o", "out.py")
    assert "did you mean" not in err
    assert "check the class name" in err


# (e) a file path where the module path belongs -----------------------------------


@pytest.mark.parametrize(
    "target,dotted",
    [
        ("msgpkg/models.py:Net", "msgpkg.models:Net"),
        ("./msgpkg/models.py:Net=Other", "msgpkg.models:Net=Other"),
        ("msgpkg/models.py", "msgpkg.models"),
        ("msgpkg/models:Net", "msgpkg.models:Net"),
        ("src/msgpkg/models.py:Net", "msgpkg.models:Net"),
    ],
)
def test_path_like_target_gets_the_dotted_form(proj, target, dotted):
    err = fail("wrap", target, "-o", "out.py")
    assert "is a file path; use the dotted module path: " + dotted in err
    assert err.rstrip().endswith(dotted)
    assert not (proj / "out.py").exists()


def test_path_like_target_in_check_config_gets_the_hint_too(proj):
    (proj / "pyproject.toml").write_text(
        '[tool.nnxgen.outputs]\n"msgpkg/models_linen.py" = ["msgpkg/models.py:Net"]\n'
    )
    err = fail("wrap")
    assert "use the dotted module path: msgpkg.models:Net" in err


# (f) ModeError ends with a complete sentence ---------------------------------------


def test_mode_error_does_not_end_with_flaxs_dangling_options(wrap):
    mod = wrap("generated_examples.mlp:MLP")
    model = mod.MLP(din=3, dmid=4, dout=2)
    x = jnp.ones((1, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    with pytest.raises(ModeError) as err:
        model.apply(variables, x)
    msg = str(err.value)
    assert "Consider one of the following options" not in msg
    assert not msg.rstrip().endswith(":")
    assert "(flax: No `" in msg and "argument was provided to" in msg
    assert msg.endswith(".)")
    assert "pass train=True or train=False" in msg
