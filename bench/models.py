"""Models the benchmarks write to a temp dir at run time and wrap with ``nnxgen wrap``.

NNX → Linen: an 8-layer Linear+relu MLP and two config-driven models (a small
ResNet built from a *frozen* config dataclass holding lists, a pre-norm LM stack
built from a *plain* one: arguments Python cannot hash); the ``ScannedStack`` and
``CachedDecoder`` test fixtures are wrapped the same way. Linen → NNX: an 8-layer
Linen Dense+relu MLP. Each ``setup_*`` writes, wraps and imports, returning
(source module or class, wrapper module or class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wrapping import import_fresh, wrap, write_and_wrap

DEEP_MODULE = "nnxgen_bench_models"
DEEP_SOURCE = '''\
"""Models used only by nnxgen's benchmark (written at run time)."""

from __future__ import annotations

import jax
from flax import nnx


class DeepMLP(nnx.Module):
    """``depth`` Linear layers with relu in between."""

    def __init__(self, din: int, width: int = 256, depth: int = 8, *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(din if i == 0 else width, width, rngs=rngs) for i in range(depth)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nnx.relu(x)
        return x
'''

CONFIG_MODULE = "nnxgen_bench_config_models"
CONFIG_SOURCE = """\
\"\"\"Config-driven models used only by nnxgen's benchmark (written at run time).

As current NNX model code takes its hyper-parameters: a config dataclass holding
lists, which Python cannot hash (frozen for the ResNet, a plain dataclass for the LM).
\"\"\"

from __future__ import annotations

import dataclasses

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    in_channels: int = 3
    num_classes: int = 10
    stem_width: int = 16
    stage_sizes: list[int] = dataclasses.field(default_factory=lambda: [2, 2])
    widths: list[int] = dataclasses.field(default_factory=lambda: [16, 32])
    strides: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    kernel_size: tuple[int, int] = (3, 3)
    momentum: float = 0.9
    epsilon: float = 1e-5
    use_bias: bool = False
    activation: str = "relu"
    head_bias: bool = True


class Block(nnx.Module):
    def __init__(self, din: int, dout: int, stride: int, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        s = (stride, stride)
        conv = dict(kernel_size=cfg.kernel_size, use_bias=cfg.use_bias, rngs=rngs)
        norm = dict(momentum=cfg.momentum, epsilon=cfg.epsilon, rngs=rngs)
        self.conv1 = nnx.Conv(din, dout, strides=s, **conv)
        self.bn1 = nnx.BatchNorm(dout, **norm)
        self.conv2 = nnx.Conv(dout, dout, **conv)
        self.bn2 = nnx.BatchNorm(dout, **norm)
        if stride != 1 or din != dout:
            self.proj = nnx.data(nnx.Conv(din, dout, kernel_size=(1, 1), strides=s, use_bias=False, rngs=rngs))
        else:
            self.proj = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + (x if self.proj is None else self.proj(x)))


class ResNet(nnx.Module):
    \"\"\"A small ResNet built from a frozen config dataclass with lists.\"\"\"

    def __init__(self, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(cfg.in_channels, cfg.stem_width, kernel_size=cfg.kernel_size, use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(cfg.stem_width, momentum=cfg.momentum, epsilon=cfg.epsilon, rngs=rngs)
        blocks = []
        d = cfg.stem_width
        for n, w, st in zip(cfg.stage_sizes, cfg.widths, cfg.strides):
            for i in range(n):
                blocks.append(Block(d, w, st if i == 0 else 1, cfg, rngs=rngs))
                d = w
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(d, cfg.num_classes, use_bias=cfg.head_bias, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


@dataclasses.dataclass
class LMConfig:
    dim: int = 128
    heads: int = 4
    mlp_ratio: int = 4
    layer_types: list[str] = dataclasses.field(default_factory=lambda: ["attn", "mlp"] * 3)
    vocab: int = 512
    norm_eps: float = 1e-6
    use_bias: bool = False
    tie_embeddings: bool = False
    rope_theta: float = 10000.0
    max_len: int = 256
    dtype_name: str = "float32"
    extra: dict = dataclasses.field(default_factory=lambda: {"mlp_act": "gelu"})


class LM(nnx.Module):
    \"\"\"A small pre-norm decoder stack built from a plain (non-frozen) config dataclass.\"\"\"

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        layers, norms = [], []
        for kind in cfg.layer_types:
            norms.append(nnx.RMSNorm(cfg.dim, epsilon=cfg.norm_eps, rngs=rngs))
            if kind == "attn":
                layers.append(nnx.MultiHeadAttention(cfg.heads, cfg.dim, use_bias=cfg.use_bias, decode=False, rngs=rngs))
            else:
                layers.append(nnx.Sequential(
                    nnx.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim, use_bias=cfg.use_bias, rngs=rngs),
                    nnx.gelu,
                    nnx.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim, use_bias=cfg.use_bias, rngs=rngs),
                ))
        self.norms = nnx.List(norms)
        self.layers = nnx.List(layers)
        self.final_norm = nnx.RMSNorm(cfg.dim, epsilon=cfg.norm_eps, rngs=rngs)
        self.head = nnx.Linear(cfg.dim, cfg.vocab, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for norm, layer in zip(self.norms, self.layers):
            x = x + layer(norm(x))
        return self.head(self.final_norm(x))
"""


WILD_MODULE = "tests.fixtures.wildnnx.models"
WILD_CLASSES = ("ScannedStack", "CachedDecoder")
WILD_LINEN = "nnxgen_bench_wild_linen"

LINEN_DEEP_MODULE = "nnxgen_linen_bench_models"
LINEN_DEEP_SOURCE = '''\
"""Linen models used only by nnxgen's linen benchmark (written at run time)."""

from __future__ import annotations

import jax
from flax import linen as nn


class DeepMLP(nn.Module):
    """``depth`` Dense layers of ``width`` with relu in between."""

    width: int = 256
    depth: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[..., din]`` inputs to ``[..., width]`` outputs."""
        for i in range(self.depth):
            x = nn.Dense(self.width)(x)
            if i < self.depth - 1:
                x = nn.relu(x)
        return x
'''


def setup_deep_mlp(tmpdir: str) -> tuple[type, type]:
    """The NNX DeepMLP and its generated Linen wrapper."""
    nnx_mod, linen_mod = write_and_wrap(
        tmpdir, DEEP_MODULE, DEEP_SOURCE, ["DeepMLP"], "_linen"
    )
    return nnx_mod.DeepMLP, linen_mod.DeepMLP


def setup_config_models(tmpdir: str) -> tuple[Any, Any]:
    """The config-driven NNX models' module and its generated Linen wrappers' module."""
    return write_and_wrap(
        tmpdir, CONFIG_MODULE, CONFIG_SOURCE, ["ResNet", "LM"], "_linen"
    )


def setup_wild(tmpdir: str) -> tuple[Any, Any]:
    """``ScannedStack`` and ``CachedDecoder`` of the wild-NNX test fixtures, wrapped."""
    wrap(
        [f"{WILD_MODULE}:{c}" for c in WILD_CLASSES], Path(tmpdir) / f"{WILD_LINEN}.py"
    )
    return import_fresh(tmpdir, WILD_MODULE), import_fresh(tmpdir, WILD_LINEN)


def setup_linen_deep_mlp(tmpdir: str) -> tuple[type, type]:
    """The Linen DeepMLP and its generated NNX wrapper."""
    linen_mod, nnx_mod = write_and_wrap(
        tmpdir, LINEN_DEEP_MODULE, LINEN_DEEP_SOURCE, ["DeepMLP"], "_nnx"
    )
    return linen_mod.DeepMLP, nnx_mod.DeepMLP
