"""Eager sharding outside the mesh: ``init`` under ``jax.set_mesh``, ``apply`` outside it.

With flax's eager sharding (on by default), an NNX variable annotated with
``out_sharding`` is sharded when it is created, which needs a mesh. ``apply``
builds its layout by tracing the constructor; that trace creates no sharded
value (``_compat.layout_variables``), so ``apply`` runs outside the mesh that
``init`` had, as ``nnx.merge`` + call does in pure NNX.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SPECS = {
    "batch_stats/bn/mean": "P()",
    "batch_stats/bn/var": "P()",
    "params/bn/bias": "P()",
    "params/bn/scale": "P('model',)",
    "params/lin/bias": "P('model',)",
    "params/lin/kernel": "P(None, 'model')",
}


pytestmark = pytest.mark.slow  # simulated meshes in subprocesses


@pytest.fixture(scope="module")
def measured(wrap, tmp_path_factory):
    mod = wrap("tests.mesh_outside_check")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": os.pathsep.join([str(os.path.dirname(mod.__file__)), str(ROOT)]),
    }
    res = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mesh_outside_check.py"), mod.__name__],
        env=env, capture_output=True, text=True, timeout=600, check=False,
        cwd=tmp_path_factory.mktemp("mesh_outside"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _spec(s: str) -> str:
    """``PartitionSpec(...)`` (older jax) and ``P(...)`` print the same here."""
    return s.replace("PartitionSpec(", "P(")


def test_init_under_the_mesh_is_sharded_as_annotated(measured):
    assert measured["devices"] == 4 and measured["eager_default"]
    names = ("specs", "abstract_specs", "shardings", "specs_again", "shardings_again")
    for name in names:
        assert {k: _spec(v) for k, v in measured[name].items()} == SPECS, name
    pure = {k.split("/", 1)[1]: v for k, v in SPECS.items()}
    assert {k: _spec(v) for k, v in measured["pure_specs"].items()} == pure
    assert {k: _spec(v) for k, v in measured["pure_shardings"].items()} == pure
    assert not measured["layout_built_by_init"]
    assert measured["init_again_diff"] == 0.0


def test_apply_outside_the_mesh_equals_pure_nnx(measured):
    assert measured["pure_jit_diff"] == 0.0
    for name in ("eval_eager", "eval_jit", "train_eager", "train_jit"):
        assert measured[f"{name}_diff"] < 1e-6, name


def test_layout_built_outside_the_mesh_is_pure_nnx_s(measured):
    """Same graph definitions (metadata included: ``eager_sharding`` as flax set
    it) and partition specs as the module split under the mesh."""
    assert measured["same_graphdefs"]
    pure = {k.split("/", 1)[1]: v for k, v in SPECS.items()}
    assert {k: _spec(v) for k, v in measured["live_specs"].items()} == pure
    assert measured["live_eager_sharding"] == ["True"]
    assert measured["mixed_same_graphdef"] and measured["mixed_finite"]
    assert {k: _spec(v) for k, v in measured["mixed_specs"].items()} == {
        "params/u": "P('model',)",
        "params/w": "P(None, 'model')",
    }


def test_restored_variables_apply_where_no_layout_was_built_under_a_mesh(measured):
    assert not measured["fresh_layout_cached"]
    for name in ("restored_eager", "restored_jit", "placed_jit"):
        assert measured[f"{name}_diff"] < 1e-6, name
