"""``nnxgen.convert.from_linen_from_nnx`` on variables made by Kauldron's real function.

``kauldron.contrib.modules.linen_from_nnx`` imports ``kauldron.kd`` (clu,
TensorFlow), so it runs in the stack's full-install Kauldron venv (the one the
``kd.train.Trainer`` test builds: same kauldron / jax / flax as this venv), via
tests/kd_linen_from_nnx_script.py; the assertions live here.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.test_kauldron_trainer import PINS, PY_VERSION, ROOT, _tail, kauldron_python

SCRIPT = ROOT / "tests" / "kd_linen_from_nnx_script.py"
RESULT_MARK = "KD_LINEN_FROM_NNX_RESULT "


def run(script, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "fixtures")]),
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONNOUSERSITE="1",
    )
    return subprocess.run(
        [str(kauldron_python()), str(script), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def result() -> dict:
    p = run(SCRIPT)
    lines = [x for x in p.stdout.splitlines() if x.startswith(RESULT_MARK)]
    assert p.returncode == 0 and len(lines) == 1, _tail(p.stdout + p.stderr)
    res = json.loads(lines[0][len(RESULT_MARK) :])
    print(json.dumps(res, indent=1, sort_keys=True))
    return res


@pytest.mark.slow
def test_it_is_the_real_function_on_this_stack(result):
    assert result["linen_from_nnx"] == "kauldron.contrib.modules.nnx_wrapper.linen_from_nnx"
    assert {k: result[k] for k in ("python", "kauldron", "jax", "flax")} == {
        "python": PY_VERSION, "kauldron": PINS["kauldron"], "jax": PINS["jax"],
        "flax": PINS["flax"],
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("model", ["classifier", "stack"])
def test_converted_trained_variables_apply_like_kauldron_and_pure_nnx(result, model):
    r = result["models"][model]
    # kd's own layout: Variables under params, graphdef/rng_vars/attributes under nnx
    assert r["kd_collections"] == ["nnx", "params"], r
    assert r["kd_param_leaf_type"] == "Param", r
    assert r["params_changed_by_step"] is True, r
    # converted: exactly the layout the wrapper's own init makes
    assert r["converted_collections"] == ["batch_stats", "params"], r
    assert r["converted_structure_equals_init"] is True, r
    assert r["converted_shapes_equal_init"] is True, r
    assert r["batch_stats_moved_by_kd_step"] is True, r
    # same function: eval outputs equal kd's and the pure NNX module's
    assert r["eval_max_diff_vs_kd"] <= 1e-6, r
    assert r["eval_max_diff_vs_pure_nnx"] <= 1e-6, r
    # and training continues with nnxgen from there
    assert r["nnxgen_train_apply_finite"] is True, r
    assert r["nnxgen_train_updates"] == ["batch_stats"], r


@pytest.mark.slow
def test_the_side_by_side_in_docs_kauldron_md(tmp_path):
    """`bench/run.py kauldron`'s behaviour rows, as docs/kauldron.md states them."""
    out = tmp_path / "kd_side_by_side.json"
    p = run(ROOT / "bench" / "run.py", "kauldron", "--no-times", "--json", str(out))
    assert p.returncode == 0, _tail(p.stdout + p.stderr)
    rep = json.loads(out.read_text())
    assert rep["versions"]["kauldron"] == PINS["kauldron"]
    assert rep["kd_jit_eval_without_rngs_prints"] == ["No rngs found in scope."] * 2
    for name, r in rep["models"].items():
        b = {k: (v["nnxgen"], v["kd"]) for k, v in r["behaviour"].items()}
        assert b["eval_max_abs_diff_vs_pure_nnx"] == (0.0, 0.0), name
        ours, kd = b["one_key_init"]
        assert ours == "ok" and "No RngStream named 'dropout'" in kd, name
        assert b["init_leaves_batch_stats_at_constructor_values"] == (True, False), name
        ours, kd = b["train_apply_with_dropout_stream"]
        assert ours == "ok" and "No RngStream named 'rngs'" in kd, name
        for row in ("train_apply_with_default_stream_only", "train_apply_without_rngs"):
            ours, kd = b[row]
            assert ours.startswith("NnxgenError") and "'dropout'" in ours and kd == "ok", row
        assert b["eager_train_apply_mutates_callers_variables"] == (False, True), name
        keys_ours, keys_kd = b["kontext_keypaths"]
        assert keys_kd == {}, name
        if name == "hierarchical_kontext":
            assert keys_ours["image"] == "batch.image" and set(keys_ours) == {"image", "label"}
