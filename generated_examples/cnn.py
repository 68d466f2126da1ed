"""A small convolutional classifier."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class CNN(nnx.Module):
    """Two conv layers with average pooling, then a linear classifier."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        features: Sequence[int] = (8, 16),
        kernel_size: tuple[int, int] = (3, 3),
        dtype: jnp.dtype = jnp.float32,
        *,
        rngs: nnx.Rngs,
    ):
        self.conv1 = nnx.Conv(
            in_channels, features[0], kernel_size, dtype=dtype, rngs=rngs
        )
        self.conv2 = nnx.Conv(
            features[0], features[1], kernel_size, dtype=dtype, rngs=rngs
        )
        self.head = nnx.Linear(features[1], num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits for NHWC images."""
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.relu(self.conv2(x))
        x = x.mean(axis=(1, 2))
        return self.head(x)
