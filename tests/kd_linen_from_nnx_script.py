"""Checkpoint migration from Kauldron's real ``linen_from_nnx`` to nnxgen's layout.

Run with the Python of a *full* Kauldron install (``linen_from_nnx`` imports
``kauldron.kd``, which needs clu / TensorFlow), e.g.::

    PYTHONPATH=<repo>:<repo>/tests/fixtures .venv-kauldron-py3.12-kd1.4.4/bin/python \\
        tests/kd_linen_from_nnx_script.py

For two NNX models (``kdpkg.models.Classifier`` around a ``Backbone``: a
hierarchical model with BatchNorm + Dropout; ``scalepkg.models.Stack``: layers
in an ``nnx.List``, int keys), it makes variables with the real
``kauldron.contrib.modules.linen_from_nnx`` (init, then one jitted SGD train
step in training mode, BatchNorm statistics updated through the ``nnx``
collection), converts them with ``nnxgen.convert.from_linen_from_nnx`` and
applies the generated wrapper to them. It prints ONE JSON line of what it
measured (after ``RESULT_MARK``); tests/test_linen_from_nnx.py judges it.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
import tempfile
from pathlib import Path

RESULT_MARK = "KD_LINEN_FROM_NNX_RESULT "
ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests" / "fixtures", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def main(work: Path) -> dict:
    from kd_trainer_script import _nnxgen_templates_from_checkout

    _nnxgen_templates_from_checkout()
    import importlib

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx
    from kauldron.contrib.modules import linen_from_nnx  # the real function

    from nnxgen import convert, generate

    assert linen_from_nnx.__module__ == "kauldron.contrib.modules.nnx_wrapper"
    from kdpkg import models as kdm
    from scalepkg import models as scm

    path = work / "kd_convert_wrappers.py"
    path.write_text(generate.generate(["kdpkg.models", "scalepkg.models:Stack"], str(path)))
    sys.path.insert(0, str(work))
    W = importlib.import_module(path.stem)

    x = jnp.linspace(-1.0, 1.0, 24).reshape(6, 4)
    target = jnp.arange(6) % 3

    def tree_equal(a, b) -> bool:
        la, ta = jax.tree.flatten(a)
        lb, tb = jax.tree.flatten(b)
        return ta == tb and all(np.array_equal(p, q) for p, q in zip(la, lb))

    def max_diff(a, b) -> float:
        return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))

    def shapes(tree):
        return jax.tree.map(lambda a: list(np.shape(a)), jax.tree.map(jnp.asarray, tree))

    def pure_nnx(kd_vars, nnx_cls_out=None):
        """The NNX module kd's variables hold (graphdef + state), in eval mode."""
        n = kd_vars["nnx"]
        module = nnx.merge(n["graphdef"], kd_vars["params"], n["rng_vars"], n["attributes"])
        module.eval()
        return module

    cases = {
        "classifier": (
            linen_from_nnx(
                kdm.Classifier,
                backbone=linen_from_nnx(kdm.Backbone, din=4),
                num_classes=3,
                dropout=0.5,
            ),
            W.Classifier(backbone=W.Backbone(din=4), num_classes=3, dropout=0.5),
            lambda y: jnp.mean(
                -jax.nn.log_softmax(y)[jnp.arange(y.shape[0]), target]
            ),
        ),
        "stack": (
            linen_from_nnx(scm.Stack, 4, depth=2),
            W.Stack(4, depth=2),
            lambda y: jnp.mean((y - 0.5) ** 2),
        ),
    }
    results: dict = {}
    for name, (kd_model, ours, loss_of) in cases.items():
        r: dict = {}
        k_params, k_drop, k_step = jax.random.split(jax.random.key(0), 3)
        kd_vars = kd_model.init(
            {"params": k_params, "dropout": k_drop}, x, is_training_property=False
        )
        r["kd_collections"] = sorted(kd_vars)
        r["kd_param_leaf_type"] = type(jax.tree.leaves(
            kd_vars["params"], is_leaf=lambda v: isinstance(v, nnx.Variable))[0]).__name__  # fmt: skip

        # one training step with kd's wrapper: grads on params, BatchNorm statistics
        # through the mutable 'nnx' collection (kd reseeds rngs from the 'default'
        # stream: a 'dropout' stream alone raises in kd, see docs/kauldron.md)
        # (the GraphDef in kd's variables is not an array: kept out of jit's arguments)
        gdef = kd_vars["nnx"]["graphdef"]

        def with_gdef(v):
            return {**v, "nnx": {**v["nnx"], "graphdef": gdef}}

        def without_gdef(v):
            return {**v, "nnx": {k: t for k, t in v["nnx"].items() if k != "graphdef"}}

        @jax.jit
        def train_step(v, key):
            def loss(params):
                # fresh Variable objects at this trace level: kd's BatchNorm update
                # mutates them (those made outside jax.grad cannot be mutated inside)
                state = jax.tree.map(lambda a: a, {**v, "params": params})
                y, upd = kd_model.apply(
                    with_gdef(state), x, is_training_property=True,
                    rngs={"default": key}, mutable=["nnx"],
                )  # fmt: skip
                return loss_of(y), upd

            (l, upd), g = jax.value_and_grad(loss, has_aux=True)(v["params"])
            params = jax.tree.map(lambda p, d: p - 0.1 * d, v["params"], g)
            return without_gdef({**v, "params": params, **upd}), l

        trained, loss0 = train_step(without_gdef(kd_vars), k_step)
        trained = with_gdef(trained)
        r["kd_train_loss"] = float(loss0)
        r["params_changed_by_step"] = not tree_equal(
            jax.tree.map(jnp.asarray, kd_vars["params"]), jax.tree.map(jnp.asarray, trained["params"])
        )
        y_kd = kd_model.apply(trained, x, is_training_property=False, rngs={"default": k_step})

        # the conversion, on the variables the real linen_from_nnx made and trained
        converted = convert.from_linen_from_nnx(trained)
        r["converted_collections"] = sorted(converted)
        like = ours.init(jax.random.key(1), x, train=False)
        r["converted_structure_equals_init"] = jax.tree.structure(converted) == jax.tree.structure(
            like
        )
        r["converted_shapes_equal_init"] = shapes(converted) == shapes(like)
        y_ours = ours.apply(converted, x, train=False)
        y_pure = pure_nnx(trained)(x)
        r["eval_max_diff_vs_kd"] = max_diff(y_ours, y_kd)
        r["eval_max_diff_vs_pure_nnx"] = max_diff(y_ours, y_pure)
        if "batch_stats" in converted:
            bs = jax.tree.leaves(converted["batch_stats"])
            init_bs = jax.tree.leaves(like["batch_stats"])
            r["batch_stats_moved_by_kd_step"] = any(
                not np.array_equal(a, b) for a, b in zip(bs, init_bs)
            )
        # training goes on with nnxgen from the converted variables
        y_tr, upd = ours.apply(
            converted, x, train=True, rngs={"dropout": k_step}, mutable=["batch_stats"]
        )
        r["nnxgen_train_apply_finite"] = bool(jnp.all(jnp.isfinite(y_tr)))
        r["nnxgen_train_updates"] = sorted(upd)
        results[name] = r

    return {
        "python": "%d.%d" % sys.version_info[:2],
        "kauldron": md.version("kauldron"),
        "jax": md.version("jax"),
        "flax": md.version("flax"),
        "linen_from_nnx": f"{linen_from_nnx.__module__}.{linen_from_nnx.__name__}",
        "models": results,
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="kd_convert_") as tmp:
        out = main(Path(tmp))
    print(RESULT_MARK + json.dumps(out, sort_keys=True), flush=True)
