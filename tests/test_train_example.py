"""The user-facing training example ``generated_examples/train_mlp.py`` works."""

from __future__ import annotations

import math
import runpy

import pytest


pytestmark = pytest.mark.slow  # a training run


def test_training_reduces_loss_and_updates_batch_stats(capsys):
    from generated_examples import train_mlp

    result = train_mlp.main(steps=150, seed=0)

    assert set(result) >= {
        "first_loss",
        "last_loss",
        "eval_loss",
        "batch_stats_changed",
    }
    assert all(
        math.isfinite(result[k]) for k in ("first_loss", "last_loss", "eval_loss")
    )
    assert result["last_loss"] < 0.5 * result["first_loss"], result
    assert result["eval_loss"] < 0.5 * result["first_loss"], result
    assert result["batch_stats_changed"] is True

    logged = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("step")
    ]
    assert [int(line.split()[1]) for line in logged] == [0, 50, 100, 149]


# runpy warns because the test above imported the module already; harmless here.
@pytest.mark.filterwarnings(
    "ignore:'generated_examples.train_mlp' found in sys.modules"
)
def test_runs_as_a_script(capsys):
    """``python -m generated_examples.train_mlp``, run in-process (saves a jax import)."""
    runpy.run_module("generated_examples.train_mlp", run_name="__main__")

    out = capsys.readouterr().out
    assert "step  250  train loss" in out
    assert "eval loss (train=False)" in out
    assert "'batch_stats_changed': True" in out
