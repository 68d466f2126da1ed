"""nnxgen vs Kauldron's ``linen_from_nnx``, side by side, against pure NNX.

Needs a full Kauldron install (``linen_from_nnx`` imports ``kauldron.kd``), e.g.
the venv the Trainer test builds::

    PYTHONPATH=.:tests/fixtures .venv-kauldron-py3.12-kd1.4.4/bin/python bench/run.py kauldron

For each model (an MLP with BatchNorm + Dropout; a hierarchical, kontext-keyed
classifier) it records what a user sees -- eval outputs vs the pure NNX module
holding the same state, how init and train-mode apply treat rng streams and
modes -- and the median wall time of jitted eval / jitted train / eager eval
apply and of init (process CPU time), as ratios to pure NNX (``nnx.merge(graphdef, state)(x)``)
and nnxgen / kd. Prints a table; ``--json`` saves everything.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as md
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from wrapping import wrap

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests" / "fixtures", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def outcome(fn):
    """'ok' or 'ExceptionType: first line of the message'."""
    try:
        fn()
        return "ok"
    except Exception as e:  # noqa: BLE001 -- any failure is a behaviour row
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def median_s(fn, repeats: int, inner: int = 10) -> float:
    """Median over ``repeats`` samples of the process CPU time per call (each sample
    averages ``inner`` calls): less sensitive than wall time to other processes on a
    shared machine (as ``run.py nnx-to-linen`` measures)."""
    import jax

    jax.block_until_ready(fn())  # warm-up / compile
    times = []
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(inner):
            jax.block_until_ready(fn())
        times.append((time.process_time() - t) / inner)
    return statistics.median(times)


def run(quick: bool, times: bool = True) -> dict:
    """The behaviour rows and (``times``) the timings of both wrappers."""
    # Kauldron is an optional dependency (a full install): imported here only.
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from kauldron import kontext
    from kauldron.contrib.modules import linen_from_nnx
    from kdpkg import models as kdm

    from generated_examples import mlp as mlp_src
    from tests.helpers import load_variables

    tmp = Path(tempfile.mkdtemp(prefix="kd_compare_"))
    path = tmp / "kd_compare_wrappers.py"
    wrap(["generated_examples.mlp:MLP", "kdpkg.models"], path)
    sys.path.insert(0, str(tmp))
    W = importlib.import_module(path.stem)

    repeats = 5 if quick else 20
    x = jax.random.normal(jax.random.key(9), (64, 16))
    models = {
        "mlp_bn_dropout": (
            lambda rngs: mlp_src.MLP(16, 64, 8, dropout_rate=0.5, rngs=rngs),
            W.MLP(din=16, dmid=64, dout=8, dropout_rate=0.5),
            linen_from_nnx(mlp_src.MLP, 16, 64, 8, dropout_rate=0.5),
        ),
        "hierarchical_kontext": (
            lambda rngs: kdm.Classifier(
                kdm.Backbone(16, 32, rngs=rngs), 8, 0.5, rngs=rngs
            ),
            W.Classifier(
                backbone=W.Backbone(din=16, width=32), num_classes=8, dropout=0.5
            ),
            linen_from_nnx(
                kdm.Classifier,
                backbone=linen_from_nnx(kdm.Backbone, din=16, width=32),
                num_classes=8,
                dropout=0.5,
            ),
        ),
    }
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    report: dict = {
        "versions": {p: md.version(p) for p in ("jax", "flax", "kauldron")},
        "python": "{}.{}".format(*sys.version_info[:2]),
        "repeats": repeats,
        "models": {},
    }

    def compare(make_nnx, ours, kd) -> dict:
        """Behaviour rows and times of one model's two wrappers."""
        r: dict = {"behaviour": {}, "times_s": {}}
        b = r["behaviour"]
        # -- init ----------------------------------------------------------------
        b["one_key_init"] = {
            "nnxgen": outcome(lambda: ours.init(k0, x, train=False)),
            "kd": outcome(lambda: kd.init(k0, x, is_training_property=False)),
        }
        v_ours = ours.init(k0, x, train=False)
        v_kd = kd.init({"params": k0, "dropout": k1}, x)
        kd_stats = jax.tree.leaves(v_kd["nnx"]["attributes"])
        b["init_leaves_batch_stats_at_constructor_values"] = {
            "nnxgen": all(
                np.array_equal(a, np.zeros_like(a))
                or np.array_equal(a, np.ones_like(a))
                for a in jax.tree.leaves(v_ours["batch_stats"])
            ),
            "kd": all(
                np.array_equal(a, np.zeros_like(a))
                or np.array_equal(a, np.ones_like(a))
                for a in (np.asarray(s) for s in kd_stats)
                if np.issubdtype(a.dtype, np.floating)
            ),
        }
        # pure NNX references holding each wrapper's state
        pure_ours = load_variables(make_nnx(nnx.Rngs(0)), v_ours)
        pure_ours.eval()
        n = v_kd["nnx"]
        pure_kd = nnx.merge(
            n["graphdef"], v_kd["params"], n["rng_vars"], n["attributes"]
        )
        pure_kd.eval()

        # -- outputs ---------------------------------------------------------------
        y_ours = ours.apply(v_ours, x, train=False)
        y_kd = kd.apply(v_kd, x, is_training_property=False, rngs={"default": k2})
        b["eval_max_abs_diff_vs_pure_nnx"] = {
            "nnxgen": float(jnp.max(jnp.abs(y_ours - pure_ours(x)))),
            "kd": float(jnp.max(jnp.abs(y_kd - pure_kd(x)))),
        }
        # -- train-mode apply and rng streams --------------------------------------
        b["train_apply_with_dropout_stream"] = {
            "nnxgen": outcome(lambda: ours.apply(v_ours, x, train=True, rngs={"dropout": k1},
                                                 mutable=["batch_stats"])),
            "kd": outcome(lambda: kd.apply(v_kd, x, is_training_property=True,
                                           rngs={"dropout": k1}, mutable=["nnx"])),
        }  # fmt: skip
        b["train_apply_with_default_stream_only"] = {
            "nnxgen": outcome(lambda: ours.apply(v_ours, x, train=True, rngs={"default": k1},
                                                 mutable=["batch_stats"])),
            "kd": outcome(lambda: kd.apply(v_kd, x, is_training_property=True,
                                           rngs={"default": k1}, mutable=["nnx"])),
        }  # fmt: skip
        b["train_apply_without_rngs"] = {
            "nnxgen": outcome(lambda: ours.apply(v_ours, x, train=True, mutable=["batch_stats"])),
            "kd": outcome(lambda: kd.apply(v_kd, x, is_training_property=True, mutable=["nnx"])),
        }  # fmt: skip
        snapshot = jax.tree.map(lambda a: np.array(a), v_kd["nnx"]["attributes"])
        snap_ours = jax.tree.map(lambda a: np.array(a), v_ours["batch_stats"])
        kd.apply(
            v_kd, x, is_training_property=True, rngs={"default": k1}, mutable=["nnx"]
        )
        ours.apply(v_ours, x, train=True, rngs={"dropout": k1}, mutable=["batch_stats"])
        b["eager_train_apply_mutates_callers_variables"] = {
            "nnxgen": not all(
                np.array_equal(a, np.asarray(c))
                for a, c in zip(jax.tree.leaves(snap_ours), jax.tree.leaves(v_ours["batch_stats"]))
            ),
            "kd": not all(
                np.array_equal(a, np.asarray(c))
                for a, c in zip(jax.tree.leaves(snapshot), jax.tree.leaves(v_kd["nnx"]["attributes"]))
            ),
        }  # fmt: skip
        v_kd = kd.init(
            {"params": k0, "dropout": k1}, x
        )  # fresh after the in-place update
        b["kontext_keypaths"] = {
            "nnxgen": {k: str(v) for k, v in kontext.get_keypaths(ours).items()},
            "kd": {k: str(v) for k, v in kontext.get_keypaths(kd).items()},
        }

        if not times:
            return r
        # -- times ---------------------------------------------------------------
        gdef_kd = v_kd["nnx"]["graphdef"]

        def kd_vars(v):
            return {**v, "nnx": {**v["nnx"], "graphdef": gdef_kd}}

        def strip(v):
            return {**v, "nnx": {k: t for k, t in v["nnx"].items() if k != "graphdef"}}

        sv_kd = strip(v_kd)
        g_pure, s_pure = nnx.split(pure_ours)
        pure_eval = jax.jit(lambda s, x: nnx.merge(g_pure, s)(x))

        def train_step(m, x):
            return m(x), nnx.state(m)

        pure_ours.train()
        g_tr, s_tr = nnx.split(pure_ours)
        pure_train = jax.jit(lambda s, x: train_step(nnx.merge(g_tr, s), x))
        pure_ours.eval()
        ours_eval = jax.jit(lambda v, x: ours.apply(v, x, train=False))
        kd_eval = jax.jit(lambda v, x: kd.apply(kd_vars(v), x, is_training_property=False,
                                                rngs={"default": k2}))  # fmt: skip
        ours_train = jax.jit(lambda v, x, k: ours.apply(v, x, train=True, rngs={"dropout": k},
                                                        mutable=["batch_stats"]))  # fmt: skip
        kd_train = jax.jit(lambda v, x, k: kd.apply(kd_vars(v), x, is_training_property=True,
                                                    rngs={"default": k}, mutable=["nnx"])[0])  # fmt: skip
        t = r["times_s"]
        t["jit_eval"] = {
            "pure": median_s(lambda: pure_eval(s_pure, x), repeats),
            "nnxgen": median_s(lambda: ours_eval(v_ours, x), repeats),
            "kd": median_s(lambda: kd_eval(sv_kd, x), repeats),
        }
        t["jit_train"] = {
            "pure": median_s(lambda: pure_train(s_tr, x), repeats),
            "nnxgen": median_s(lambda: ours_train(v_ours, x, k1), repeats),
            "kd": median_s(lambda: kd_train(sv_kd, x, k1), repeats),
        }
        fresh_kd = lambda: kd.init({"params": k0, "dropout": k1}, x)
        t["eager_eval"] = {
            "pure": median_s(lambda: pure_ours(x), repeats),
            "nnxgen": median_s(lambda: ours.apply(v_ours, x, train=False), repeats),
            "kd": median_s(lambda: kd.apply(v_kd, x, is_training_property=False,
                                            rngs={"default": k2}), repeats),
        }  # fmt: skip
        t["init"] = {
            "pure": median_s(lambda: nnx.split(make_nnx(nnx.Rngs(0))), repeats),
            "nnxgen": median_s(lambda: ours.init(k0, x, train=False), repeats),
            "kd": median_s(fresh_kd, repeats),
        }
        r["ratios"] = {
            what: {
                "nnxgen/pure": v["nnxgen"] / v["pure"],
                "kd/pure": v["kd"] / v["pure"],
                "nnxgen/kd": v["nnxgen"] / v["kd"],
            }
            for what, v in t.items()
        }
        return r

    for name, (make_nnx, ours, kd) in models.items():
        report["models"][name] = compare(make_nnx, ours, kd)

    # kd's jitted eval calls jax.debug.print when the scope has no rngs
    v = models["mlp_bn_dropout"][2].init({"params": k0, "dropout": k1}, x)
    kd = models["mlp_bn_dropout"][2]
    gdef = v["nnx"]["graphdef"]
    f = jax.jit(lambda p, a, x: kd.apply({"params": p, "nnx": {**a, "graphdef": gdef}}, x,
                                         is_training_property=False))  # fmt: skip
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        for _ in range(2):
            jax.block_until_ready(
                f(
                    v["params"],
                    {k: t for k, t in v["nnx"].items() if k != "graphdef"},
                    x,
                )
            )
        jax.effects_barrier()
    report["kd_jit_eval_without_rngs_prints"] = buf.getvalue().strip().splitlines()
    return report
