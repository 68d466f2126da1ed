"""NNX → Linen: the table of cases (models, sizes, modes) that ``run.py nnx-to-linen`` runs.

(a) an 8-layer Linear+relu MLP (width 256), (b) the BatchNorm+Dropout ``MLP``
block, (c) ``TransformerBlock`` and (d) ``CNN`` from ``generated_examples``, (e)
``ScannedStack`` (8 blocks of width 256 built with ``nnx.split_rngs`` +
``nnx.vmap``, run with ``nnx.scan``; dropout) and (f) one cached decode step of
``CachedDecoder`` (width 256, 4 heads, cache of 32 steps for a batch of 8), both
from ``tests/fixtures/wildnnx/models.py``, (g) a small ResNet (BatchNorm) and (h) a
small pre-norm LM stack built from config dataclasses holding lists (``models.py``).
What each implementation runs: ``impls_nnx_to_linen.py``.
"""

from __future__ import annotations

from impls_nnx_to_linen import IMPLS, Case, DecodeCase, ForwardCase
from models import setup_config_models, setup_deep_mlp, setup_wild

from generated_examples import (
    cnn,
    cnn_linen,
    mlp,
    mlp_linen,
    transformer,
    transformer_linen,
)

__all__ = ["ALL_CASES", "IMPLS", "make_cases"]

ALL_CASES = (
    "mlp8",
    "mlp_bn",
    "transformer",
    "cnn",
    "resnet_cfg",
    "lm_cfg",
    "scan",
    "decode",
)

# nnx.bridge.to_linen cannot run the decode step: its init stores the module's
# variables *before* calling ``nnx_method`` (flax/nnx/bridge/wrappers.py,
# ToLinen.__call__), so ``init(..., nnx_method='init_cache')`` returns only
# ``params``; and every apply rebuilds the module with its constructor, which has
# no cache (``CachedDecoder.__call__`` then fails on ``self.steps``; an incoming
# ``cache`` collection is "unknown module paths").
BRIDGE_NO_METHOD_CACHE = (
    "to_linen drops variables created by a method (init_cache) and rebuilds the "
    "module without them on every apply"
)


def make_cases(tmpdir: str) -> list[Case]:

    deep_nnx, deep_linen = setup_deep_mlp(tmpdir)
    wild, wild_linen = setup_wild(tmpdir)
    cfgm, cfgm_linen = setup_config_models(tmpdir)
    return [
        ForwardCase(
            "mlp8",
            "(a) 8-layer MLP w256",
            deep_nnx,
            deep_linen,
            (256,),
            {"width": 256, "depth": 8},
            x_shape=(64, 256),
        ),
        ForwardCase(
            "mlp_bn",
            "(b) MLP BN+Dropout",
            mlp.MLP,
            mlp_linen.MLP,
            (128, 512, 128),
            {"dropout_rate": 0.1, "momentum": 0.9},
            x_shape=(64, 128),
            has_mode=True,
        ),
        ForwardCase(
            "transformer",
            "(c) TransformerBlock",
            transformer.TransformerBlock,
            transformer_linen.TransformerBlock,
            (4, 128, 512, 0.1),
            {},
            x_shape=(8, 64, 128),
            has_mode=True,
        ),
        ForwardCase(
            "cnn",
            "(d) CNN",
            cnn.CNN,
            cnn_linen.CNN,
            (3, 10, (16, 32), (3, 3)),
            {},
            x_shape=(8, 32, 32, 3),
        ),
        # Hyper-parameters in a config dataclass holding lists (unhashable):
        # frozen for the ResNet, a plain dataclass for the LM.
        ForwardCase(
            "resnet_cfg",
            "(g) ResNet, frozen cfg w/ lists",
            cfgm.ResNet,
            cfgm_linen.ResNet,
            (cfgm.ResNetConfig(),),
            {},
            x_shape=(8, 32, 32, 3),
            has_mode=True,
        ),
        ForwardCase(
            "lm_cfg",
            "(h) LM, plain dataclass cfg",
            cfgm.LM,
            cfgm_linen.LM,
            (cfgm.LMConfig(),),
            {},
            x_shape=(4, 64, 128),
        ),
        # nnx.split_rngs + nnx.vmap built, nnx.scan run; dropout in every block.
        # Un-jitted, nnx.scan traces and compiles its body on every call (~0.2 s
        # eval, ~0.6 s train of CPU, whatever the sizes), so every call is the
        # same (one warm-up suffices) and this case repeats its timings less often.
        ForwardCase(
            "scan",
            "(e) ScannedStack 8x256",
            wild.ScannedStack,
            wild_linen.ScannedStack,
            (256, 8),
            {"rate": 0.1},
            x_shape=(64, 256),
            has_mode=True,
            train_mutable=(),
            max_reps={"init": 7, "compile": 2, "eager": 3},
            eager_warmup=1,
        ),
        DecodeCase(
            "decode",
            "(f) CachedDecoder step",
            wild.CachedDecoder,
            wild_linen.CachedDecoder,
            (256, 4),
            {},
            missing={"bridge": BRIDGE_NO_METHOD_CACHE},
            batch=8,
            length=32,
            dim=256,
        ),
    ]
