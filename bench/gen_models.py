"""The generation benchmark's input: a package of 100 small NNX classes, written at run time.

Varied signatures (positional-only and keyword-only parameters, literal / tuple /
dtype / callable / initializer / enum / module-constant defaults, ``Sequence`` and
``Optional`` annotations, submodule arguments, extra methods, methods taking
``rngs``, ``*args``, parameter-free modules, ...), as three modules holding the
first 10, 50 and 100 classes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

PKG = "nnxgen_genbench_pkg"
SIZES = (10, 50, 100)

HEADER = '''\
"""{n} small NNX classes for nnxgen's generation benchmark (written at run time)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

WIDTH = 32
SCALE = 0.5


class Act(enum.Enum):
    RELU = "relu"
    GELU = "gelu"


def zeros_init(key, shape, dtype=jnp.float32):
    return jnp.zeros(shape, dtype)

'''

# Each template is one class; {i} is its index, {prev} an earlier class (for submodule
# arguments). Bodies are plausible NNX code; the generator only reads signatures,
# docstrings and the source text of annotations and defaults.
TEMPLATES = [
    '''
class Block{i}(nnx.Module):
    """A linear layer {i}."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)
''',
    '''
class Block{i}(nnx.Module):
    """Linear with defaults {i}."""

    def __init__(self, din: int, dout: int = 16, use_bias: bool = True, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, use_bias=use_bias, rngs=rngs)

    def __call__(self, x: jax.Array, scale: float = 1.0) -> jax.Array:
        return self.linear(x) * scale
''',
    '''
class Block{i}(nnx.Module):
    """Dropout and BatchNorm {i} (mode-dependent)."""

    def __init__(
        self,
        features: int,
        *,
        dropout_rate: float = 0.1,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        self.bn = nnx.BatchNorm(features, momentum=momentum, epsilon=epsilon, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(self.bn(x))
''',
    '''
class Block{i}(nnx.Module):
    """Convolutions over a feature pyramid {i}."""

    def __init__(
        self,
        in_channels: int,
        features: Sequence[int] = (8, 16),
        kernel_size: tuple[int, int] = (3, 3),
        padding: str = "SAME",
        dtype: jnp.dtype = jnp.float32,
        *,
        rngs: nnx.Rngs,
    ):
        chans = (in_channels, *features)
        self.convs = nnx.List(
            [nnx.Conv(a, b, kernel_size, padding=padding, dtype=dtype, rngs=rngs)
             for a, b in zip(chans[:-1], chans[1:])]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = nnx.relu(conv(x))
        return x
''',
    '''
class Block{i}(nnx.Module):
    """Activation and initializer defaults {i}."""

    def __init__(
        self,
        din: int,
        width: int = WIDTH,
        *,
        act: Callable[[jax.Array], jax.Array] = nnx.relu,
        kernel_init: nnx.Initializer = nnx.initializers.lecun_normal(),
        bias_init: nnx.Initializer = zeros_init,
        rngs: nnx.Rngs,
    ):
        self.linear = nnx.Linear(din, width, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.act(self.linear(x))

    def logits(self, x: jax.Array, temperature: float = SCALE) -> jax.Array:
        """Scaled pre-activations."""
        return self.linear(x) / temperature
''',
    '''
class Block{i}(nnx.Module):
    """Positional-only and keyword-only parameters, enum and None defaults {i}."""

    def __init__(
        self,
        din: int,
        /,
        dout: int = 8,
        *,
        act: Act = Act.GELU,
        label: str = "block-{i}",
        extra: Optional[int] = None,
        rngs: nnx.Rngs,
    ):
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array, *others: jax.Array) -> jax.Array:
        for o in others:
            x = x + o
        y = self.linear(x)
        return nnx.relu(y) if self.act is Act.RELU else nnx.gelu(y)
''',
    '''
class Block{i}(nnx.Module):
    """Takes a submodule {i}."""

    def __init__(self, inner: {prev}, dout: int = 4, *, rngs: nnx.Rngs):
        self.inner = inner
        self.head = nnx.Linear(WIDTH, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(x)
''',
    '''
class Block{i}(nnx.Module):
    """No rngs: a parameter-free scale {i}."""

    def __init__(self, n: int, value: float = 1.0):
        self.scale = nnx.Param(jnp.full((n,), value))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.scale[...]
''',
    '''
class Block{i}(nnx.Module):
    """Attention with a method taking rngs {i}."""

    def __init__(self, num_heads: int, features: int, dropout_rate: float = 0.0, *, rngs: nnx.Rngs):
        self.attn = nnx.MultiHeadAttention(
            num_heads=num_heads, in_features=features, dropout_rate=dropout_rate,
            decode=False, rngs=rngs,
        )

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        return self.attn(x, mask=mask)

    def sample(self, x: jax.Array, *, rngs: nnx.Rngs) -> jax.Array:
        """Adds noise drawn from ``rngs``."""
        return self.attn(x) + jax.random.normal(rngs.noise(), x.shape)
''',
    '''
class Block{i}(nnx.Module):
    """LayerNorm + MLP with many keyword defaults {i}."""

    def __init__(
        self,
        features: int,
        hidden: int = 4 * WIDTH,
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        use_bias: bool = True,
        param_dtype: jnp.dtype = jnp.float32,
        precision: Optional[jax.lax.Precision] = None,
        rngs: nnx.Rngs,
    ):
        self.norm = nnx.LayerNorm(features, epsilon=epsilon, use_scale=use_scale,
                                  use_bias=use_bias, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = nnx.Linear(features, hidden, precision=precision, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, features, precision=precision, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.fc2(nnx.gelu(self.fc1(self.norm(x))))

    def normed(self, x: jax.Array) -> jax.Array:
        return self.norm(x)
''',
]


def module_source(n: int) -> str:
    parts = [HEADER.format(n=n)]
    for i in range(n):
        t = TEMPLATES[i % len(TEMPLATES)]
        prev = f"Block{i - 1}" if i else "nnx.Module"
        parts.append(textwrap.dedent(t).format(i=i, prev=prev))
    return "".join(parts)


def write_package(root: Path) -> dict[int, str]:
    pkg = root / PKG
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        '"""Generated for nnxgen\'s generation benchmark."""\n'
    )
    mods = {}
    for n in SIZES:
        (pkg / f"mod{n}.py").write_text(module_source(n))
        mods[n] = f"{PKG}.mod{n}"
    return mods
