"""A pre-norm transformer block built on nnx.MultiHeadAttention."""

from __future__ import annotations

import jax
from flax import nnx


class TransformerBlock(nnx.Module):
    """Self-attention and an MLP, each with a residual connection and LayerNorm."""

    def __init__(
        self,
        num_heads: int,
        features: int,
        mlp_dim: int,
        dropout_rate: float = 0.1,
        *,
        rngs: nnx.Rngs,
    ):
        self.ln1 = nnx.LayerNorm(features, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=num_heads,
            in_features=features,
            dropout_rate=dropout_rate,
            decode=False,
            rngs=rngs,
        )
        self.ln2 = nnx.LayerNorm(features, rngs=rngs)
        self.mlp_in = nnx.Linear(features, mlp_dim, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_dim, features, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """``x``: ``[batch, length, features]``; ``mask``: broadcastable attention mask."""
        x = x + self.dropout(self.attn(self.ln1(x), mask=mask))
        h = nnx.gelu(self.mlp_in(self.ln2(x)))
        return x + self.dropout(self.mlp_out(h))
