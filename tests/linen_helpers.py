"""Shared helpers of the Linen -> NNX tests: reading a wrapper's (or ToNNX's)
variables back as Linen's, reproducing its keys, comparing states exactly."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx


def linen_vars(model: nnx.Module) -> dict:
    """The Linen variables a wrapper (or ToNNX) holds, via flax's bridge converter."""
    attrs = {
        k: v
        for k, v in vars(model).items()
        if not k.startswith(("to_nnx__", "_pytree__"))
        and isinstance(v, (nnx.Variable, Mapping))  # not the mode attributes
    }
    return nnx.bridge.variables.nnx_attrs_to_linen_vars(attrs)


def draw(rngs: nnx.Rngs) -> dict[str, jax.Array]:
    """The keys one wrapper call draws: one per stream, ``default`` as ``params``."""
    keys = {name: stream() for name, stream in rngs.items()}
    if "params" not in keys and "default" in keys:
        keys["params"] = keys.pop("default")
    return keys


def flat_state(model: nnx.Module) -> dict[tuple, tuple[type, np.ndarray]]:
    """path -> (variable type, value) of the whole state (rng keys as key data)."""
    out = {}
    for path, v in nnx.to_flat_state(nnx.state(model)):
        value = v.get_value()
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        out[tuple(path)] = (type(v), np.asarray(value))
    return out


def assert_same_state(a: nnx.Module, b: nnx.Module, rtol: float = 0.0) -> None:
    """Same paths and variable types; values equal (exactly, unless ``rtol``)."""
    fa, fb = flat_state(a), flat_state(b)
    assert sorted(fa) == sorted(fb)
    for path in fa:
        assert fa[path][0] is fb[path][0], (path, fa[path][0], fb[path][0])
        if rtol:
            np.testing.assert_allclose(
                fa[path][1], fb[path][1], rtol=rtol, err_msg=str(path)
            )
        else:
            np.testing.assert_array_equal(fa[path][1], fb[path][1], err_msg=str(path))


def assert_equal(a, b) -> None:
    """Trees with the same (non-zero) number of leaves, equal leaf by leaf."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) > 0
    for u, v in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
