"""A hierarchical model: an encoder that takes a backbone module as an argument."""

from __future__ import annotations

import jax
from flax import nnx


class Backbone(nnx.Module):
    """Feature extractor."""

    def __init__(self, din: int, width: int = 8, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.width = width

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.relu(self.norm(self.linear(x)))


class Encoder(nnx.Module):
    """Runs ``backbone`` and projects its features to ``dout``."""

    def __init__(self, backbone: Backbone, dout: int, *, rngs: nnx.Rngs):
        self.backbone = backbone
        self.head = nnx.Linear(backbone.width, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.backbone(x))
