"""An MLP block with BatchNorm and Dropout (mode-dependent layers)."""

from __future__ import annotations

import jax
from flax import nnx


class MLP(nnx.Module):
    """Two-layer perceptron: Linear -> BatchNorm -> relu -> Dropout -> Linear."""

    def __init__(
        self,
        din: int,
        dmid: int,
        dout: int,
        *,
        dropout_rate: float = 0.1,
        momentum: float = 0.9,
        rngs: nnx.Rngs,
    ):
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.bn = nnx.BatchNorm(dmid, momentum=momentum, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[..., din]`` inputs to ``[..., dout]`` outputs."""
        x = nnx.relu(self.bn(self.linear1(x)))
        return self.linear2(self.dropout(x))

    def embed(self, x: jax.Array) -> jax.Array:
        """Hidden features after the first layer and BatchNorm."""
        return self.bn(self.linear1(x))
