"""The generator's Linen -> NNX direction: what the file says (signatures as written,
renames, defaults), that it is clean and deterministic, and the CLI around it."""

from __future__ import annotations

import importlib
import inspect
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnxgen import generate
from tests.helpers import ROOT, ruff, run_cli

FIXTURES = ROOT / "tests" / "fixtures"
LAYERS = [
    "flax.linen:Dense", "flax.linen:Conv", "flax.linen:Embed", "flax.linen:BatchNorm",
    "flax.linen:LayerNorm", "flax.linen:Dropout", "flax.linen:MultiHeadDotProductAttention",
    "flax.linen:LSTMCell", "flax.linen:RNN",
]  # fmt: skip


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    d = tmp_path_factory.mktemp("linengen")
    sys.path[:0] = [str(FIXTURES), str(d)]
    text = generate.generate(["linengen.models"], str(d / "awk_nnx.py"))
    (d / "awk_nnx.py").write_text(text)
    importlib.invalidate_caches()
    yield text, importlib.import_module("awk_nnx"), d
    sys.path.remove(str(FIXTURES))
    sys.path.remove(str(d))


def test_flax_linen_layers_generate_clean_and_deterministic(tmp_path):
    text = generate.generate(LAYERS, "layers_nnx.py")
    assert generate.generate(LAYERS, "layers_nnx.py") == text
    (tmp_path / "layers_nnx.py").write_text(text)
    path = str(tmp_path / "layers_nnx.py")
    lint = ruff("check", "--no-cache", "--isolated", path)  # from ROOT, as test_flax_layers
    assert lint.returncode == 0, lint.stdout
    fmt = ruff("format", "--check", "--no-cache", "--isolated", path)
    assert fmt.returncode == 0, fmt.stdout
    head = text.split("\n\n")[0]
    assert "# NNX wrappers for Flax Linen modules, generated from:" in head
    assert "_rt.check_version(3, __name__)" in text
    # inherited-from-flax defaults as flax writes them
    assert "kernel_init: Initializer = default_kernel_init," in text
    assert "param_dtype: Dtype = jnp.float32," in text
    assert text.count("(nnx.Module):\n") == len(LAYERS)


def test_fields_inherited_in_order_with_source_text(awkward):
    text, mod, _ = awkward
    sig = inspect.signature(mod.Child.__init__)
    assert list(sig.parameters) == ["self", "width", "act", "scale", "tags", "sizes", "rngs"]
    assert sig.parameters["rngs"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "act: Any = nn.relu," in text
    assert 'tags: tuple[str, ...] = ("a", "b"),' in text
    # a default_factory has no importable text: read from the Linen class, said so
    assert '_Child_init_sizes_default = _rt.linen_default(_LinenChild, "sizes")' in text
    assert "sizes: list[int] = _Child_init_sizes_default," in text
    assert "# sizes: a default_factory field" in text
    assert mod.Child(2, rngs=nnx.Rngs(0)).to_nnx__module.sizes == [1, 2]


def test_mode_arguments_and_renamed_methods(awkward):
    text, mod, _ = awkward
    call = inspect.signature(mod.Child.__call__)
    assert str(call) == (
        "(self, x: 'jax.Array', mask: 'jax.Array | None' = None, *, "
        "training: 'bool | None' = None) -> 'jax.Array'"
    )
    assert "#   train -> train_" in text and "#   eval -> eval_" in text
    assert callable(mod.Child.train_) and mod.Child.train is nnx.Module.train
    # a mode argument before a required positional one keeps no default
    pos = inspect.signature(mod.Positional.__call__)
    assert str(pos) == "(self, x: 'jax.Array', deterministic: 'bool | None', y: 'jax.Array') -> 'jax.Array'"
    assert '{"deterministic": deterministic, "y": y}' in text
    proj = inspect.signature(mod.Positional.project)
    assert list(proj.parameters) == ["self", "x", "use_running_average", "extra"]
    assert proj.parameters["x"].kind is inspect.Parameter.POSITIONAL_ONLY


def test_awkward_wrappers_run_like_linen(awkward):
    _, mod, _ = awkward
    from linengen import models

    x = jnp.ones((2, 3))
    m = mod.Child(4, rngs=nnx.Rngs(0))
    m.eval()
    y = m(x)
    variables = {"params": nnx.bridge.variables.nnx_attrs_to_linen_vars(
        {"Dense_0": m.Dense_0})["params"]}
    ref = models.Child(4).apply(variables, x, training=False)
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    dropped = np.asarray(m(x, training=True))  # rate 0.5: kept entries doubled
    kept = dropped != 0
    assert kept.any() and not kept.all()
    np.testing.assert_allclose(dropped[kept], 2 * np.asarray(ref)[kept], rtol=1e-6)
    np.testing.assert_allclose(m.eval_(x), -x)
    p = mod.Positional(rngs=nnx.Rngs(0))
    p.eval()
    out = p(x, None, jnp.ones((2, 3)))
    assert out.shape == (2, 3)


def test_check_reports_a_stale_nnx_wrapper(tmp_path):
    pkg = tmp_path / "lpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    src = (
        "import flax.linen as nn\n\n\nclass Head(nn.Module):\n    features: int = 2\n\n"
        "    @nn.compact\n    def __call__(self, x):\n        return nn.Dense(self.features)(x)\n"
    )
    (pkg / "m.py").write_text(src)
    res = run_cli("wrap", "lpkg.m:Head", "-o", "head_nnx.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert run_cli("check", "head_nnx.py", cwd=tmp_path).returncode == 0
    (pkg / "m.py").write_text(src.replace("features: int = 2", "features: int = 3"))
    stale = run_cli("check", "head_nnx.py", cwd=tmp_path)
    assert stale.returncode == 1
    assert "features: int = 3" in stale.stdout


def test_inspect_a_linen_target_as_json():
    import json

    res = run_cli("inspect", "generated_examples.linen_mlp:MLP", "--json")
    assert res.returncode == 0, res.stderr
    (cls,) = json.loads(res.stdout)["classes"]
    assert cls["direction"] == "linen->nnx"
    assert [f["name"] for f in cls["fields"]] == ["dmid", "dout", "dropout_rate", "momentum"]
    assert [(m["name"], m["modes"]) for m in cls["methods"]] == [
        ("__call__", ["train"]), ("embed", ["train"])]
