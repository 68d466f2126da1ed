"""Multi-controller SPMD: 2 processes x 4 CPU devices, checked against 1 x 8 and 1 x 1.

The processes (tests/multihost_worker.py) run the generated wrapper of its ``Net``
(partitioned kernels, BatchNorm, Dropout) as docs/scale.md shows: ``jax.distributed``
with the coordinator on 127.0.0.1, gloo CPU collectives, one global mesh, sharded
init from the partition specs, ``jax.make_array_from_process_local_data``, three
optax steps. The 2-process run saves an orbax checkpoint that the 1-process runs
restore onto their own mesh. All processes run once per module (one after the
other: 2 x 4, then 1 x 8 beside 1 x 1), each bounded and killed by pid when the
run times out or a process of it fails.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT

WORKER = ROOT / "tests" / "multihost_worker.py"
TIMEOUT_S = 150  # per group of processes; a run takes ~10 s
slow = pytest.mark.slow  # processes with simulated devices (the guide check is quick)


def _lines(code: str) -> list[str]:
    """Code lines without indentation, trailing comments and the worker's ``_P`` alias."""
    out = []
    for line in code.splitlines():
        line = (
            re.sub(r"\s+#.*$", "", line)
            .strip()
            .replace("_P(", "P(")
            .replace("_P =", "P =")
        )
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_the_guide_shows_the_code_the_workers_run():
    worker = set(_lines(WORKER.read_text(encoding="utf-8")))
    guide = (ROOT / "docs" / "scale.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", guide, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 6
    missing = [line for block in blocks for line in _lines(block) if line not in worker]
    assert missing == []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_together(jobs: list[tuple[int, list[str], Path]], gen: Path) -> None:
    """Start every job (devices, worker args, log path); fail if one fails or hangs."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for devices, args, log in jobs:
            env = {
                **os.environ,
                "JAX_PLATFORMS": "cpu",
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
                "PYTHONPATH": os.pathsep.join([str(gen), str(ROOT)]),
            }
            with open(log, "wb") as f:
                p = subprocess.Popen(
                    [sys.executable, str(WORKER), *args], env=env, cwd=log.parent,
                    stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            procs.append((p, log))
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p, _ in procs):
            failed = [(p, log) for p, log in procs if p.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        bad = [(p, log) for p, log in procs if p.poll() != 0]
        if bad:
            p, log = bad[0]
            what = "timed out" if p.returncode is None else f"exited {p.returncode}"
            pytest.fail(f"worker {p.args[2:]} {what}:\n{log.read_text()[-4000:]}")
    finally:
        for p, _ in procs:  # ends only the processes started here, by pid
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


@pytest.fixture(scope="module")
def runs(wrap, tmp_path_factory) -> dict[str, dict]:
    mod = wrap("tests.multihost_worker")
    gen = Path(mod.__file__).parent
    root = tmp_path_factory.mktemp("multihost")
    ckpt = root / "ckpt"
    dirs = {name: root / name for name in ("p2x4", "p1x8", "p1x1")}
    for d in dirs.values():
        d.mkdir()
    port = str(_free_port())
    _run_together(
        [
            (4, [mod.__name__, str(dirs["p2x4"]), "--processes", "2", "--process-id",
                 str(i), "--port", port, "--save", str(ckpt)], dirs["p2x4"] / f"log{i}")
            for i in range(2)
        ],
        gen,
    )  # fmt: skip
    _run_together(
        [
            (
                n,
                [mod.__name__, str(dirs[name]), "--restore", str(ckpt)],
                dirs[name] / "log",
            )
            for name, n in (("p1x8", 8), ("p1x1", 1))
        ],
        gen,
    )
    return {
        name: json.loads((d / "result.json").read_text(encoding="utf-8"))
        for name, d in dirs.items()
    }


def _close(a: dict[str, list], b: dict[str, list], atol: float) -> dict[str, float]:
    assert a.keys() == b.keys()
    diffs = {k: float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a}
    return {k: d for k, d in diffs.items() if not d <= atol}


@slow
def test_two_processes_share_one_global_mesh_sharded_as_annotated(runs):
    r = runs["p2x4"]
    assert (r["process_count"], r["device_count"], r["local_device_count"]) == (2, 8, 4)
    assert r["mesh"] == {"data": 4, "model": 2}
    # process 0 holds its half of the global batch
    assert r["batch_rows_here"] == list(range(8))
    assert r["annotated"] == {
        "batch_stats/bn/mean": "P()",
        "batch_stats/bn/var": "P()",
        "params/bn/bias": "P('model',)",
        "params/bn/scale": "P('model',)",
        "params/down/kernel": "P('model', 'data')",
        "params/up/kernel": "P('data', 'model')",
    }
    for name in ("p2x4", "p1x8", "p1x1"):  # (on 1 x 1 the mesh axes have size 1)
        assert runs[name]["laid_out"] == r["annotated"], name
    params = {k: v for k, v in r["annotated"].items() if k.startswith("params")}
    for name in ("p2x4", "p1x8"):  # (after training on 1 x 1, jax may say P())
        after = runs[name]["after_training"]
        assert {k: v for k, v in after.items() if k in params} == params, name


@slow
def test_training_equals_one_process_of_eight_and_of_one_device(runs):
    ref = runs["p2x4"]
    for name in ("p1x8", "p1x1"):
        r = runs[name]
        assert r["process_count"] == 1 and r["batch_rows_here"] == list(range(16))
        np.testing.assert_allclose(r["losses"], ref["losses"], rtol=1e-5, err_msg=name)
        assert ref["losses"][-1] < ref["losses"][0]
        assert _close(r["final"], ref["final"], atol=1e-5) == {}, name
        assert _close({"y": r["eval"]}, {"y": ref["eval"]}, atol=1e-5) == {}, name


@slow
def test_checkpoint_from_two_processes_restores_in_one_process(runs):
    ref = runs["p2x4"]
    for name in ("p1x8", "p1x1"):
        r = runs[name]
        assert r["restored"] == ref["final"], name  # the same values, bit for bit
        assert r["restored_laid_out"] == ref["annotated"], name  # onto this run's mesh
        y, y_ref = {"y": r["restored_eval"]}, {"y": ref["eval"]}
        assert _close(y, y_ref, atol=1e-6) == {}, name
