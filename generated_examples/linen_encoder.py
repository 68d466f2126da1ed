"""A Linen transformer encoder (compact; Embed, attention, LayerNorm, Dropout,
logically partitioned kernels, sown attention output), kept in Linen.

``linen_encoder_nnx.py`` is its generated NNX wrapper.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


class Encoder(nn.Module):
    """Token embedding -> one pre-norm self-attention block -> MLP -> logits."""

    vocab: int
    d: int = 32
    heads: int = 2
    dropout_rate: float = 0.1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Maps ``[batch, length]`` token ids to ``[batch, length, vocab]`` logits."""
        x = nn.Embed(self.vocab, self.d, dtype=self.dtype)(tokens)
        h = nn.LayerNorm(dtype=self.dtype)(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.heads, dropout_rate=self.dropout_rate, dtype=self.dtype
        )(h, h, deterministic=deterministic)
        self.sow("intermediates", "attention", h)
        x = x + nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
        h = nn.Dense(
            2 * self.d,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.lecun_normal(), ("embed", "mlp")
            ),
            dtype=self.dtype,
        )(nn.LayerNorm(dtype=self.dtype)(x))
        x = x + nn.Dense(self.d, dtype=self.dtype)(nn.gelu(h))
        return nn.Dense(self.vocab, dtype=self.dtype)(x)
