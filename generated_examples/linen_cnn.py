"""Linen vision and sequence models (Conv + BatchNorm; LSTMCell under nn.RNN), kept in Linen.

``linen_cnn_nnx.py`` holds their generated NNX wrappers.
"""

from __future__ import annotations

import jax
from flax import linen as nn


class CNN(nn.Module):
    """Conv -> BatchNorm -> relu -> avg_pool -> Dense, for ``[N, H, W, C]`` images."""

    features: int = 8
    classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
        """Class logits of a batch of images."""
        x = nn.Conv(self.features, kernel_size=(3, 3))(x)
        x = nn.BatchNorm(use_running_average=use_running_average)(x)
        x = nn.avg_pool(nn.relu(x), window_shape=(2, 2), strides=(2, 2))
        return nn.Dense(self.classes)(x.reshape((x.shape[0], -1)))


class SequenceClassifier(nn.Module):
    """An LSTM over ``[batch, time, features]`` sequences, classified from its last output."""

    hidden: int = 16
    classes: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Class logits of each sequence."""
        y = nn.RNN(nn.LSTMCell(self.hidden))(x)
        return nn.Dense(self.classes)(y[:, -1])
