"""Train a generated nnxgen wrapper with Kauldron's real ``kd.train.Trainer``.

Run with the Python of a *full* Kauldron install (TensorFlow included), e.g.::

    PYTHONPATH=<repo>:<repo>/tests/fixtures .venv-kauldron/bin/python tests/kd_trainer_script.py

It generates the Linen wrappers for ``kdpkg.models`` (an NNX ``Classifier`` whose
inputs come from ``kontext.Key`` annotations, with BatchNorm + Dropout, and its
``Backbone``), trains them with ``kd.train.Trainer`` (in-memory data, optax, an
inline ``kd.evals.Evaluator``, an orbax ``kd.ckpts.Checkpointer``), restores the
last checkpoint, evaluates, and prints ONE line of JSON with what it measured
(prefixed by ``RESULT_MARK``). It asserts nothing itself beyond "it ran": the
pytest wrapper ``tests/test_kauldron_trainer.py`` judges the numbers.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
RESULT_MARK = "KD_TRAINER_RESULT "

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests" / "fixtures"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

N_EXAMPLES = 128
BATCH_SIZE = 32
NUM_TRAIN_STEPS = 20
SAVE_EVERY = 10


def _nnxgen_templates_from_checkout() -> None:
    """Make ``nnxgen.templates`` importable when nnxgen runs from a checkout.

    The templates live in ``<repo>/templates`` and are mapped to
    ``nnxgen.templates`` by setuptools (``package-dir``), so a bare
    ``PYTHONPATH=<repo>`` (no ``pip install``) cannot import them. Mirror the
    mapping here; an installed nnxgen is used as is.
    """
    try:
        importlib.import_module("nnxgen.templates")
        return
    except ModuleNotFoundError:
        pass
    init = ROOT / "templates" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "nnxgen.templates", init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nnxgen.templates"] = module
    spec.loader.exec_module(module)


def generate_wrappers(out_dir: Path):
    """``nnxgen wrap kdpkg.models`` into ``out_dir`` and import the result."""
    _nnxgen_templates_from_checkout()
    from nnxgen import generate

    path = out_dir / "kd_trainer_wrappers.py"
    path.write_text(generate.generate(["kdpkg.models"], str(path)), encoding="utf-8")
    sys.path.insert(0, str(out_dir))
    importlib.invalidate_caches()
    return importlib.import_module(path.stem)


def make_dataset() -> dict:
    """A small, learnable 3-class problem: label = argmax(x @ W) for a fixed W."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_EXAMPLES, 4)).astype(np.float32)
    w = np.array(
        [[2.0, -1.0, 0.0], [0.0, 2.0, -1.0], [-1.0, 0.0, 2.0], [1.0, 1.0, -2.0]]
    )
    label = np.argmax(x @ w, axis=-1).astype(np.int32)
    # Kauldron's SoftmaxCrossEntropyWithIntLabels / Accuracy want Int["*a 1"].
    return {"image": x, "label": label[:, None]}


def main(workroot: Path) -> dict:
    t_gen = time.perf_counter()
    gen_dir = workroot / "gen"
    gen_dir.mkdir()
    W = generate_wrappers(gen_dir)
    gen_s = time.perf_counter() - t_gen

    t_imp = time.perf_counter()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from kauldron import kd
    from kauldron.train import metric_writer

    _ = kd.train.Trainer  # the expensive (TensorFlow) import happens here
    import_s = time.perf_counter() - t_imp

    recorded: dict[str, dict[int, dict[str, float]]] = {}
    saved_states: dict[int, object] = {}

    @dataclasses.dataclass(frozen=True, eq=True, kw_only=True)
    class RecordingWriter(metric_writer.NoopWriter):
        """Keeps every logged loss / metric in memory (collection -> step -> values)."""

        def write_step_metrics(
            self, *, step, aux, schedules, log_summaries, timer=None
        ):
            out = aux.compute(flatten=True)
            values = {**out.loss_values, **out.metric_values}
            recorded.setdefault(self.collection, {})[int(step)] = {
                k: float(np.asarray(v)) for k, v in values.items()
            }

    @dataclasses.dataclass(frozen=True, eq=True, kw_only=True)
    class RecordingCheckpointer(kd.ckpts.Checkpointer):
        """A real orbax Checkpointer that also keeps a host copy of what it saved."""

        def save(self, state, *, step, force=False, metrics=None):
            saved_states[int(step)] = jax.device_get(state.train_state)
            return super().save(state, step=step, force=force, metrics=metrics)

    data = make_dataset()
    workdir = workroot / "workdir"
    model = W.Classifier(
        backbone=W.Backbone(din=4),
        num_classes=3,
        dropout=0.1,
        label="batch.label",  # kontext.REQUIRED in kdpkg.models
    )
    xent = kd.losses.SoftmaxCrossEntropyWithIntLabels(
        logits="preds", labels="batch.label"
    )
    trainer = kd.train.Trainer(
        seed=0,
        workdir=workdir,
        train_ds=kd.data.InMemoryPipeline(loader=lambda: data, batch_size=BATCH_SIZE),
        model=model,
        num_train_steps=NUM_TRAIN_STEPS,
        log_metrics_every=1,
        train_losses={"xent": xent},
        train_metrics={
            "acc": kd.metrics.Accuracy(logits="preds", labels="batch.label")
        },
        optimizer=optax.adam(1e-2),
        checkpointer=RecordingCheckpointer(save_interval_steps=SAVE_EVERY),
        writer=RecordingWriter(),
        evals={
            "eval": kd.evals.Evaluator(
                run=kd.evals.EveryNSteps(SAVE_EVERY),
                ds=kd.data.InMemoryPipeline(
                    loader=lambda: data, batch_size=BATCH_SIZE, num_epochs=1
                ),
                metrics={
                    "acc": kd.metrics.Accuracy(logits="preds", labels="batch.label")
                },
            )
        },
    )

    t_train = time.perf_counter()
    # Keep states as jax arrays: eager `apply(..., mutable=...)` writes BatchNorm
    # statistics into the given arrays in place (flax's own bridge.to_linen does
    # too), which fails on the read-only numpy arrays `jax.device_get` returns.
    init_state = trainer.init_state()
    state, _ = trainer.train()
    train_s = time.perf_counter() - t_train

    def leaves_equal(a, b) -> bool:
        la, ta = jax.tree.flatten(a)
        lb, tb = jax.tree.flatten(b)
        return ta == tb and all(np.array_equal(x, y) for x, y in zip(la, lb))

    def tree_shapes(tree):
        return jax.tree.map(lambda x: list(np.shape(x)), tree)

    # -- training: losses and batch statistics ---------------------------------
    train_log = recorded.get("train", {})
    steps = sorted(train_log)
    losses = [train_log[s]["losses/xent"] for s in steps]
    batch_stats_changed = "batch_stats" in state.collections and not leaves_equal(
        init_state.collections["batch_stats"], state.collections["batch_stats"]
    )
    params_changed = not leaves_equal(init_state.params, state.params)

    # -- checkpoints: written by the Trainer, restored by the Checkpointer ------
    ckpt_root = workdir / "checkpoints"
    ckpt_dirs = (
        sorted(p.name for p in ckpt_root.iterdir()) if ckpt_root.exists() else []
    )
    latest = trainer.checkpointer.latest_step

    # The Trainer saves a composite item (train_state + timer + ds_iter) and its
    # Checkpointer caches the orbax manager built for that composite, so after
    # `train()` `trainer.checkpointer.restore(trainer.init_state())` fails with
    # "Must provide `args` of type `Composite`". A fresh Checkpointer on the same
    # workdir (what an eval job or a new process has) restores the train state.
    def restore_latest():
        fresh = kd.ckpts.Checkpointer(workdir=workdir, save_interval_steps=SAVE_EVERY)
        return fresh.restore(trainer.init_state())

    restored = restore_latest()
    saved = saved_states.get(int(restored.step))
    restore_equal = saved is not None and all(
        leaves_equal(getattr(saved, f), getattr(restored, f))
        for f in ("params", "collections", "opt_state")
    )
    restored_differs_from_init = not leaves_equal(restored.params, init_state.params)

    # Resume: one more train step from the restored (step 20) checkpoint on the
    # batch the loop saw at that step reproduces the trainer's final state.
    n_batches = N_EXAMPLES // BATCH_SIZE
    b = int(restored.step) % n_batches
    batch = jax.tree.map(lambda x: x[b * BATCH_SIZE : (b + 1) * BATCH_SIZE], data)
    resumed, _ = trainer.trainstep.step(restore_latest(), batch)
    resume_max_abs_diff = max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(
            jax.tree.leaves((resumed.params, resumed.collections)),
            jax.tree.leaves((state.params, state.collections)),
        )
    )

    # -- evaluation ---------------------------------------------------------------
    variables = {"params": state.params, **state.collections}
    x, y = jnp.asarray(data["image"]), np.asarray(data["label"][:, 0])
    logits_eval = model.apply(variables, x, is_training_property=False)
    logits_eval_explicit = model.apply(variables, x, train=False)
    logits_train, _ = model.apply(
        variables,
        x,
        is_training_property=True,
        rngs={"dropout": jax.random.key(1)},
        mutable=["batch_stats"],
    )
    acc = float(np.mean(np.argmax(np.asarray(logits_eval), -1) == y))
    init_vars = {"params": init_state.params, **init_state.collections}
    acc_init = float(
        np.mean(np.argmax(np.asarray(model.apply(init_vars, x, train=False)), -1) == y)
    )
    xent_init = float(
        optax.softmax_cross_entropy_with_integer_labels(
            model.apply(init_vars, x, train=False), y
        ).mean()
    )
    xent_final = float(
        optax.softmax_cross_entropy_with_integer_labels(logits_eval, y).mean()
    )
    restored_vars = {"params": restored.params, **restored.collections}
    logits_restored = model.apply(restored_vars, x, is_training_property=False)
    acc_at_ckpt = float(np.mean(np.argmax(np.asarray(logits_restored), -1) == y))
    xent_at_ckpt = float(
        optax.softmax_cross_entropy_with_integer_labels(logits_restored, y).mean()
    )
    # Kauldron's own Evaluator on the restored checkpoint (eval mode, full data)
    ev_out = trainer.evals["eval"].evaluate(restore_latest(), int(restored.step))
    ev_out = ev_out.compute(flatten=True)
    evaluator_acc_at_ckpt = float(np.asarray(ev_out.metric_values["metrics/acc"]))
    evaluator_xent_at_ckpt = float(np.asarray(ev_out.loss_values["losses/xent"]))

    # Kauldron's forward pass with its own rng streams: dropout follows the
    # training flag (rng-dependent in training, deterministic in eval).
    def forward(rngs, is_training):
        ctx = kd.train.Context.from_state_and_batch(state=state, batch=batch)
        ctx = kd.train.forward(ctx, model=model, rngs=rngs, is_training=is_training)
        return np.asarray(ctx.preds), ctx.collections

    streams = trainer.rng_streams
    tr0, tr_cols = forward(streams.train_rngs(0), True)
    tr0_again, _ = forward(streams.train_rngs(0), True)
    tr1, _ = forward(streams.train_rngs(1), True)
    ev0, ev_cols = forward(streams.eval_rngs(0), False)
    ev1, _ = forward(streams.eval_rngs(1), False)
    kd_forward = {
        "train_same_rng_equal": bool(np.array_equal(tr0, tr0_again)),
        "train_other_rng_differs": bool(not np.allclose(tr0, tr1)),
        "eval_rng_independent": bool(np.array_equal(ev0, ev1)),
        "eval_differs_from_train": bool(not np.allclose(ev0, tr0)),
        "train_updates_batch_stats": bool(
            not leaves_equal(tr_cols["batch_stats"], state.collections["batch_stats"])
        ),
        "eval_keeps_batch_stats": bool(
            leaves_equal(ev_cols["batch_stats"], state.collections["batch_stats"])
        ),
    }

    result = {
        "python": "%d.%d" % sys.version_info[:2],
        "jax": jax.__version__,
        "kauldron": importlib.metadata.version("kauldron"),
        "flax": importlib.metadata.version("flax"),
        "num_train_steps": NUM_TRAIN_STEPS,
        "final_step": int(state.step),
        "logged_steps": [steps[0], steps[-1], len(steps)] if steps else [],
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_first3_mean": float(np.mean(losses[:3])) if losses else None,
        "loss_last3_mean": float(np.mean(losses[-3:])) if losses else None,
        "losses": [round(v, 4) for v in losses],
        "train_acc_last": train_log[steps[-1]].get("metrics/acc") if steps else None,
        "collections": sorted(state.collections),
        "param_shapes": tree_shapes(state.params),
        "batch_stats_changed": bool(batch_stats_changed),
        "params_changed": bool(params_changed),
        "checkpoint_dirs": ckpt_dirs,
        "latest_step": latest,
        "saved_steps": sorted(saved_states),
        "restored_step": int(restored.step),
        "restore_equal": bool(restore_equal),
        "restored_differs_from_init": bool(restored_differs_from_init),
        "resume_max_abs_diff": resume_max_abs_diff,
        "eval_logits_shape": list(logits_eval.shape),
        "eval_is_training_property_matches_train_false": bool(
            np.array_equal(np.asarray(logits_eval), np.asarray(logits_eval_explicit))
        ),
        "train_mode_differs_from_eval": bool(
            not np.allclose(logits_train, logits_eval)
        ),
        "eval_acc_init": acc_init,
        "eval_acc_final": acc,
        "eval_xent_init": xent_init,
        "eval_xent_final": xent_final,
        "evaluator_inline": {
            str(s): v for s, v in sorted(recorded.get("eval", {}).items())
        },
        "evaluator_acc_at_ckpt": evaluator_acc_at_ckpt,
        "manual_acc_at_ckpt": acc_at_ckpt,
        "evaluator_xent_at_ckpt": evaluator_xent_at_ckpt,
        "manual_xent_at_ckpt": xent_at_ckpt,
        "kd_forward": kd_forward,
        "timings_s": {
            "generate": round(gen_s, 2),
            "kauldron_import": round(import_s, 2),
            "train": round(train_s, 2),
            "total": round(time.perf_counter() - T_START, 2),
        },
    }
    return result


if __name__ == "__main__":
    # optional argument: a directory to work in (kept); else a temporary one
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
        root.mkdir(parents=True, exist_ok=True)
        out = main(root)
    else:
        with tempfile.TemporaryDirectory(prefix="kd_trainer_") as tmp:
            out = main(Path(tmp))
    print(RESULT_MARK + json.dumps(out, sort_keys=True), flush=True)
