"""Generated wrappers as Kauldron models: kontext keys, training mode, configs.

Runs against the real Kauldron code (kauldron installed with --no-deps plus the
light dependency set that its kontext / konfig / train_property modules need).
"""

from __future__ import annotations

import pickle
import sys

import flax
import jax
import jax.numpy as jnp
import pytest

# kauldron is a test dependency (.ci/run installs it): a missing import fails, never skips.
from kauldron import konfig, kontext
from kauldron.utils import train_property  # noqa: F401 - patches Module.apply

from tests.helpers import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def K(wrap):
    sys.path.insert(0, str(FIXTURES))
    return wrap("kdpkg.models")


X = jnp.linspace(-1, 1, 24).reshape(6, 4)
LABEL = jnp.arange(6) % 3


def test_kontext_sees_the_keys_on_the_wrapper(K):
    model = K.Classifier(backbone=K.Backbone(din=4), num_classes=3)
    assert kontext.get_keypaths(model) == {"image": "batch.image", "label": kontext.REQUIRED}
    assert kontext.is_key_annotated(type(model))
    model = K.Classifier(backbone=K.Backbone(din=4), label="batch.label")
    assert kontext.get_keypaths(model) == {"image": "batch.image", "label": "batch.label"}
    # resolved against a batch, the keys bind to the wrapper's __call__ by name
    ctx = {"batch": {"image": X, "label": LABEL}}
    kwargs = kontext.resolve_from_keyed_obj(ctx, model, func=model.__call__)
    assert set(kwargs) == {"image", "label"}
    v = model.init(jax.random.key(0), **kwargs, train=False)
    y = model.apply(v, **kwargs, train=False)
    assert y.shape == (6, 3)


def test_is_training_property_drives_train_and_eval(K):
    model = K.Classifier(backbone=K.Backbone(din=4), num_classes=3, dropout=0.5)
    v = model.init(jax.random.key(0), X, is_training_property=False)
    k = {"dropout": jax.random.key(7)}
    y_eval = model.apply(v, X, is_training_property=False)
    y_eval_explicit = model.apply(v, X, train=False)
    assert jnp.array_equal(y_eval, y_eval_explicit)
    y_train, upd = model.apply(
        v, X, is_training_property=True, rngs=k, mutable=["batch_stats"]
    )
    y_train_explicit, upd2 = model.apply(v, X, train=True, rngs=k, mutable=["batch_stats"])
    assert jnp.array_equal(y_train, y_train_explicit)
    assert not jnp.allclose(y_train, y_eval)  # dropout + batch statistics in training
    assert jax.tree.all(jax.tree.map(jnp.array_equal, upd, upd2))
    # Kauldron's Trainer calls apply with mutable=True
    _, all_cols = model.apply(v, X, is_training_property=True, rngs=k, mutable=True)
    assert set(all_cols) >= {"params", "batch_stats"}


def test_konfig_config_resolves_hierarchical_wrappers(K):
    mod = K.__name__
    with konfig.imports(lazy=True):
        exec(f"from {mod} import Backbone, Classifier", globals())  # noqa: S102
    cfg = konfig.ConfigDict()
    cfg.model = Classifier(backbone=Backbone(din=4, width=6), num_classes=3)  # noqa: F821
    cfg.model.num_classes = 5
    cfg.model.backbone.width = 7
    model = konfig.resolve(cfg).model
    assert isinstance(model, K.Classifier) and isinstance(model.backbone, K.Backbone)
    assert (model.num_classes, model.backbone.width) == (5, 7)
    v = model.init(jax.random.key(0), X, train=False)
    assert v["params"]["head"]["kernel"].shape == (7, 5)
    assert v["params"]["backbone"]["linear"]["kernel"].shape == (4, 7)
    # a config written as plain data refers to the wrappers by import path
    plain = {"__qualname__": f"{mod}:Classifier", "num_classes": 2,
             "backbone": {"__qualname__": f"{mod}:Backbone", "din": 4}}  # fmt: skip
    assert konfig.resolve(plain) == K.Classifier(backbone=K.Backbone(din=4), num_classes=2)


def test_ml_collections_and_fiddle_configs(K):
    import fiddle as fdl
    import ml_collections

    cd = ml_collections.ConfigDict({"din": 4, "width": 5, "num_classes": 2})
    model = K.Classifier(backbone=K.Backbone(din=cd.din, width=cd.width), num_classes=cd.num_classes)
    assert model.backbone.width == 5

    cfg = fdl.Config(K.Classifier, backbone=fdl.Config(K.Backbone, din=4, width=3), num_classes=2)
    cfg.backbone.width = 6
    built = fdl.build(cfg)
    assert built == K.Classifier(backbone=K.Backbone(din=4, width=6), num_classes=2)
    v = built.init(jax.random.key(0), X, train=False)
    assert v["params"]["backbone"]["linear"]["kernel"].shape == (4, 6)


def test_wrappers_pickle_and_keep_working(K):
    model = K.Classifier(backbone=K.Backbone(din=4), num_classes=3)
    again = pickle.loads(pickle.dumps(model))
    assert again == model and type(again) is K.Classifier
    v = model.init(jax.random.key(0), X, train=False)
    assert jnp.array_equal(again.apply(v, X, train=False), model.apply(v, X, train=False))
    assert flax.core.unfreeze(v)["params"]["backbone"]["linear"]["kernel"].shape == (4, 8)


def test_runs_under_a_disallowing_transfer_guard(K):
    """Kauldron's evaluators run apply under jax.transfer_guard('disallow')."""
    from nnxgen import runtime as rt

    for cached in (rt._fixed_key, rt._zero_count, rt._const_count):
        cached.cache_clear()  # the runtime's constants are made under the guard
    model = K.Classifier(backbone=K.Backbone(din=4), num_classes=3)
    v = model.init(jax.random.key(0), X, train=False)
    k = jax.random.key(1)
    step = jax.jit(lambda v, x, k, train: model.apply(v, x, train=train, rngs={"dropout": k},
                                                       mutable=["batch_stats"]),
                   static_argnames="train")  # fmt: skip
    with jax.transfer_guard("disallow"):
        y_eval, _ = step(v, X, k, False)
        y_train, _ = step(v, X, k, True)
    assert y_eval.shape == y_train.shape == (6, 3)
    assert not jnp.allclose(y_eval, y_train)
