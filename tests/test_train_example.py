"""The user-facing training example ``generated_examples/train_mlp.py`` works."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_training_reduces_loss_and_updates_batch_stats(capsys):
    from generated_examples import train_mlp

    result = train_mlp.main(steps=150, seed=0)

    assert set(result) >= {"first_loss", "last_loss", "eval_loss", "batch_stats_changed"}
    assert all(math.isfinite(result[k]) for k in ("first_loss", "last_loss", "eval_loss"))
    assert result["last_loss"] < 0.5 * result["first_loss"], result
    assert result["eval_loss"] < 0.5 * result["first_loss"], result
    assert result["batch_stats_changed"] is True

    logged = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert [int(line.split()[1]) for line in logged] == [0, 50, 100, 149]


def test_runs_as_a_module():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "generated_examples.train_mlp"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step  250  train loss" in proc.stdout
    assert "eval loss (train=False)" in proc.stdout
    assert "'batch_stats_changed': True" in proc.stdout
