"""End-to-end: generated wrappers trained by Kauldron's real ``kd.train.Trainer``.

nnxgen's own test venv only has the light part of Kauldron (kontext / konfig /
train_property, installed with --no-deps by scripts/test.sh). The Trainer needs
the full install (TensorFlow, orbax, clu, ...), so this test builds a separate
venv for the stack under test -- the kauldron, jax, jaxlib and flax versions of
the interpreter running pytest, on its Python version -- at
``<repo>/.venv-kauldron-py<X.Y>-kd<version>`` (``uv pip install
kauldron==<version> jax==... ...``: 1.4.2 on the floor stack, 1.4.4 on the
newest; about a minute with a cold cache, 3.7 GB), reuses it afterwards, and
runs ``tests/kd_trainer_script.py`` in it. The script prints one JSON line of
measurements; the assertions live here.

It is slow but it is never skipped: a venv that cannot be built (no network, an
install failure) FAILS the test with the tail of the install log.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata as md
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "kd_trainer_script.py"
RESULT_MARK = "KD_TRAINER_RESULT "

# The stack under test: what this interpreter has (scripts/test.sh installs
# kauldron 1.4.2 / jax 0.10.2 / flax 0.12.8 on the floor, the newest on 3.12+).
PINS = {p: md.version(p) for p in ("kauldron", "jax", "jaxlib", "flax", "ruff")}
PY_VERSION = "%d.%d" % sys.version_info[:2]
VENV = ROOT / f".venv-kauldron-py{PY_VERSION}-kd{PINS['kauldron']}"
VPY = VENV / "bin" / "python"
# + optax (the Trainer's optimizer) and nnxgen's own runtime deps (nnxgen itself
# is used from this checkout through PYTHONPATH, not installed).
PACKAGES = [
    *(f"{k}=={v}" for k, v in PINS.items()),
    "optax",
    "libcst",
    "jinja2",
    "click",
]

INSTALL_TIMEOUT_S = 15 * 60
SCRIPT_TIMEOUT_S = 10 * 60

# Checks the venv without importing TensorFlow (that alone takes ~25 s).
_PROBE = f"""
import importlib.metadata as md, importlib.util, sys
pins = {PINS!r}
bad = {{k: md.version(k) for k in pins if md.version(k) != pins[k]}}
if "%d.%d" % sys.version_info[:2] != {PY_VERSION!r}:
    bad["python"] = sys.version
missing = [m for m in ("tensorflow", "clu", "orbax.checkpoint", "optax", "libcst",
                       "jinja2", "click", "ruff") if importlib.util.find_spec(m) is None]
from kauldron import kd  # noqa: F401
sys.exit(f"version mismatch: {{bad}}; missing: {{missing}}" if bad or missing else 0)
"""


def _tail(text: str, n: int = 6000) -> str:
    # tqdm redraws with carriage returns; keep the last state of each line
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(lines)[-n:]


def _usable() -> tuple[bool, str]:
    if not VPY.exists():
        return False, f"{VPY} does not exist"
    try:
        p = subprocess.run(
            [str(VPY), "-c", _PROBE],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return False, "probe timed out"
    return p.returncode == 0, _tail(p.stdout + p.stderr, 2000)


def _install(log: Path) -> None:
    """Build VENV from scratch; on any failure, fail the test with the log tail."""
    if VENV.exists():
        shutil.rmtree(VENV)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VPY), "-m", "pip", "install", "--disable-pip-version-check", "uv"],
        [str(VENV / "bin" / "uv"), "pip", "install", "--python", str(VPY), *PACKAGES],
    ]
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    with log.open("w") as out:
        for cmd in steps:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            left = deadline - time.monotonic()
            try:
                rc = subprocess.run(
                    cmd,
                    check=False,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=max(left, 1),
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if rc != 0:
                out.close()
                pytest.fail(
                    f"could not build the full Kauldron venv at {VENV} "
                    f"(step {cmd[:3]} -> {rc}); install log tail:\n"
                    + _tail(log.read_text(errors="replace")),
                    pytrace=False,
                )


def kauldron_python() -> Path:
    """The full-install venv for this stack (VENV), built on first use, then reused.

    Creation is serialised with a file lock (xdist workers, concurrent runs).
    Called from the test body (not a fixture) so that a failed build is a test
    FAILURE rather than a setup error.
    """
    key = hashlib.sha1(str(VENV).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"nnxgen-venv-kauldron-{key}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ok, why = _usable()
            if not ok:
                log = Path(tempfile.gettempdir()) / f"nnxgen-venv-kauldron-{key}.log"
                t0 = time.perf_counter()
                _install(log)
                took = time.perf_counter() - t0
                ok, why = _usable()
                assert ok, f"{VENV} was built ({took:.0f} s) but is not usable:\n{why}"
                print(f"built {VENV} in {took:.0f} s (log: {log})")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return VPY


def run_script(python: Path, work: Path) -> dict:
    """Run kd_trainer_script.py with ``python``; return its JSON measurements."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "fixtures")]),
        JAX_PLATFORMS="cpu",  # PyPI jaxlib is CPU-only; keeps TF/XLA from probing GPUs
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONNOUSERSITE="1",
    )
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [str(python), str(SCRIPT), str(work)],
            check=False,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        text = "".join(
            s.decode(errors="replace") if isinstance(s, bytes) else s
            for s in (e.stdout or "", e.stderr or "")
        )
        pytest.fail(
            f"{SCRIPT.name} timed out after {SCRIPT_TIMEOUT_S} s:\n{_tail(text)}"
        )
    lines = [x for x in p.stdout.splitlines() if x.startswith(RESULT_MARK)]
    assert p.returncode == 0 and len(lines) == 1, (
        f"{SCRIPT.name} exited {p.returncode}:\n{_tail(p.stdout + p.stderr)}"
    )
    res = json.loads(lines[0][len(RESULT_MARK) :])
    res["wall_s"] = time.perf_counter() - t0
    print(json.dumps(res, indent=1, sort_keys=True))
    return res


@pytest.mark.slow
def test_kauldron_trainer_trains_checkpoints_restores_and_evaluates(tmp_path):
    r = run_script(kauldron_python(), tmp_path)
    # the Trainer ran on this stack's versions (tests/test_matrix.py ties them to
    # the README's matrix: kauldron 1.4.2 on the floor, 1.4.4 on the newest)
    assert {k: r[k] for k in ("python", "kauldron", "jax", "flax")} == {
        "python": PY_VERSION,
        "kauldron": PINS["kauldron"],
        "jax": PINS["jax"],
        "flax": PINS["flax"],
    }

    # training: the Trainer runs steps 0..num_train_steps (inclusive) and logged each
    n = r["num_train_steps"]
    assert r["final_step"] == n + 1, r
    assert r["logged_steps"] == [0, n, n + 1], r
    assert all(math.isfinite(v) for v in r["losses"]), r["losses"]
    assert r["loss_last3_mean"] < 0.75 * r["loss_first3_mean"], r["losses"]
    assert r["params_changed"] and r["batch_stats_changed"], r
    assert r["collections"] == ["batch_stats"], r
    assert r["param_shapes"] == {
        "backbone": {"linear": {"bias": [8], "kernel": [4, 8]}},
        "bn": {"bias": [8], "scale": [8]},
        "head": {"bias": [3], "kernel": [8, 3]},
    }

    # checkpoints: orbax dirs under workdir/checkpoints; restore gives back exactly
    # what was saved, and one more train step from it reproduces the final state
    assert "ckpt_20" in r["checkpoint_dirs"], r["checkpoint_dirs"]
    assert r["latest_step"] == r["restored_step"] == 20, r
    assert r["saved_steps"] == [0, 10, 20], r
    assert r["restore_equal"] is True, r
    assert r["restored_differs_from_init"] is True, r
    assert r["resume_max_abs_diff"] <= 1e-6, r

    # evaluation: is_training_property=False == train=False; training mode differs
    assert r["eval_logits_shape"] == [128, 3], r
    assert r["eval_is_training_property_matches_train_false"] is True, r
    assert r["train_mode_differs_from_eval"] is True, r
    assert r["eval_xent_final"] < 0.75 * r["eval_xent_init"], r
    assert r["eval_acc_final"] >= 0.6 and r["eval_acc_final"] > r["eval_acc_init"], r

    # Kauldron's Evaluator (inline during training, and on the restored checkpoint)
    # agrees with a plain eval-mode apply of the wrapper
    inline = r["evaluator_inline"]
    assert sorted(inline, key=int) == ["0", "10", "20"], inline
    assert inline["0"]["losses/xent"] == pytest.approx(r["eval_xent_init"], rel=1e-5)
    assert inline["20"]["metrics/acc"] == r["evaluator_acc_at_ckpt"], r
    assert r["evaluator_acc_at_ckpt"] == r["manual_acc_at_ckpt"], r
    assert r["evaluator_xent_at_ckpt"] == pytest.approx(
        r["manual_xent_at_ckpt"], rel=1e-5
    )
    assert inline["20"]["losses/xent"] < inline["0"]["losses/xent"], inline

    # kd.train.forward with Kauldron's rng streams: dropout/BatchNorm follow the flag
    assert r["kd_forward"] == {
        "train_same_rng_equal": True,
        "train_other_rng_differs": True,
        "eval_rng_independent": True,
        "eval_differs_from_train": True,
        "train_updates_batch_stats": True,
        "eval_keeps_batch_stats": True,
    }, r["kd_forward"]
