"""NNX → Linen init memory: one fresh subprocess per implementation.

An 8-layer MLP of width 2048 (~128 MiB of params); glibc's mmap threshold is
pinned so freed buffers leave the RSS. Per implementation (``mem_child``, run as
``run.py nnx-to-linen --_mem-child IMPL --_tmpdir DIR``):

* cold peak: peak-RSS growth over the first init in a fresh process (includes
             compiling the eager kernels): ``VmHWM`` after resetting the high-water
             mark through ``/proc/self/clear_refs``, minus the RSS before (falls back
             to ``ru_maxrss`` growth where the reset is not allowed);
* warm peak: the same over a second init (the init's own transient memory);
* retained:  RSS growth still held once the init returned (the variables);
* eval_shape: ``VmHWM`` growth over ``jax.eval_shape(model.init, key, x)`` (``nnx``:
             ``nnx.eval_shape`` of the constructor); should be ~0 and return only
             ``ShapeDtypeStruct`` leaves.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx
from flax.nnx import bridge
from harness import BENCH, ROOT, block
from models import setup_deep_mlp

RUN_PY = BENCH / "run.py"

MEM_WIDTH, MEM_DEPTH, MEM_BATCH = 2048, 8, 64
MEM_IMPLS = ("nnx", "nnxgen", "bridge")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _peak_of(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """(result, VmHWM growth over fn) after resetting the high-water mark."""
    gc.collect()
    if not _reset_hwm():
        return block(fn()), None
    base = _rss_bytes()
    out = block(fn())
    hwm = _hwm_bytes()
    return out, None if hwm is None else max(0, hwm - base)


def mem_child(impl: str, tmpdir: str) -> dict[str, Any]:
    deep_nnx, deep_linen = setup_deep_mlp(tmpdir)
    x = jax.random.normal(jax.random.key(1), (MEM_BATCH, MEM_WIDTH))
    key, dkey = jax.random.key(0), jax.random.key(1)
    if impl == "nnx":

        def init():
            return nnx.split(
                deep_nnx(MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH, rngs=nnx.Rngs(0))
            )[1]

        def abstract():
            return nnx.eval_shape(
                lambda: deep_nnx(
                    MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH, rngs=nnx.Rngs(0)
                )
            )
    else:
        if impl == "nnxgen":
            model = deep_linen(MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH)
            keys: Any = key
        else:
            model = bridge.to_linen(
                deep_nnx, MEM_WIDTH, width=MEM_WIDTH, depth=MEM_DEPTH
            )
            keys = {"params": key, "dropout": dkey}

        def init():
            return model.init(keys, x)

        def abstract():
            return jax.eval_shape(model.init, keys, x)

    gc.collect()
    rss0, maxrss0 = _rss_bytes(), _maxrss_bytes()
    hwm_ok = _reset_hwm()
    t0 = time.perf_counter()
    v = block(init())
    cold_s = time.perf_counter() - t0
    if hwm_ok and _hwm_bytes() is not None:
        cold_peak = max(0, _hwm_bytes() - rss0)
    else:  # ru_maxrss cannot be reset: only growth above the import-time peak shows
        cold_peak = max(0, _maxrss_bytes() - max(maxrss0, rss0))
    gc.collect()
    retained = _rss_bytes() - rss0
    leaves = jax.tree_util.tree_leaves(v)
    param_bytes = sum(getattr(a, "nbytes", 0) for a in leaves)
    del v, leaves
    gc.collect()
    v, warm_peak = _peak_of(init)
    del v
    gc.collect()
    abstract()  # warm-up of the trace machinery, so the measured call is steady state
    gc.collect()
    shapes, abstract_peak = _peak_of(abstract)
    sleaves = jax.tree_util.tree_leaves(shapes)
    return {
        "impl": impl,
        "param_bytes": param_bytes,
        "cold_init_s": cold_s,
        "cold_peak_bytes": cold_peak,
        "warm_peak_bytes": warm_peak,
        "retained_bytes": retained,
        "eval_shape_peak_bytes": abstract_peak,
        "eval_shape_leaves": len(sleaves),
        "eval_shape_all_shapedtypestruct": bool(sleaves)
        and all(isinstance(a, jax.ShapeDtypeStruct) for a in sleaves),
    }


def bench_memory(tmpdir: str, log: Callable[[str], None]) -> dict[str, Any]:
    """One child process per implementation, run side by side (RSS is per process;
    nothing is timed here, so sharing the CPUs does not matter)."""
    out = {}
    env = dict(os.environ)
    # Freed large buffers go back to the OS (no dynamic mmap threshold), so the RSS
    # follows live memory rather than glibc's retained heap.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env.setdefault("JAX_PLATFORMS", "cpu")
    t0 = time.perf_counter()
    procs = {}
    for impl in MEM_IMPLS:
        child_dir = os.path.join(tmpdir, f"mem_{impl}")  # own copy: no file races
        os.makedirs(child_dir, exist_ok=True)
        procs[impl] = subprocess.Popen(
            [
                sys.executable,
                str(RUN_PY),
                "nnx-to-linen",
                "--_mem-child",
                impl,
                "--_tmpdir",
                child_dir,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(ROOT),
        )
    for impl, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            out[impl] = {"error": (stderr.strip().splitlines() or ["?"])[-1]}
            log(f"  memory {impl}: FAILED: {stderr[-2000:]}")
            continue
        out[impl] = json.loads(stdout.strip().splitlines()[-1])
    log(f"  memory: {time.perf_counter() - t0:.1f}s")
    return out
