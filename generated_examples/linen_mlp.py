"""A Linen MLP written with ``setup`` (BatchNorm + Dropout under ``train``), kept in Linen.

``linen_mlp_nnx.py`` is its generated NNX wrapper.
"""

from __future__ import annotations

import jax
from flax import linen as nn


class MLP(nn.Module):
    """Two-layer perceptron: Dense -> BatchNorm -> relu -> Dropout -> Dense."""

    dmid: int
    dout: int
    dropout_rate: float = 0.1
    momentum: float = 0.9

    def setup(self) -> None:
        self.dense1 = nn.Dense(self.dmid)
        self.bn = nn.BatchNorm(momentum=self.momentum)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.dense2 = nn.Dense(self.dout)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Maps ``[..., din]`` inputs to ``[..., dout]`` outputs."""
        h = self.embed(x, train)
        return self.dense2(self.dropout(h, deterministic=not train))

    def embed(self, x: jax.Array, train: bool) -> jax.Array:
        """Hidden features after the first layer and BatchNorm."""
        return nn.relu(self.bn(self.dense1(x), use_running_average=not train))
