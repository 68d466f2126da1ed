"""Helpers for tests/test_corpus_models.py (no nnxgen code is used here).

* Reference tooling: copy Linen variables into a directly constructed NNX module,
  seed its rng streams so that their first draws equal Linen's ``make_rng``, and
  compare pytrees.
* Thin NNX model classes for packages whose flagship model is built by a factory
  function rather than a class (bijx's ``coupling_flow`` / ``realnvp_flow``):
  nnxgen wraps classes, so these hold the factory's result exactly as a user would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# the reference seeding the rest of the suite uses (independent of nnxgen)
from tests.test_numerics import _node, seed_streams

# ---------------------------------------------------------------------------
# Reference tooling.


def _flat_linen(variables: Mapping[str, Any]) -> dict[tuple, tuple[str, Any]]:
    """{path (keys as str): (collection, value)} over every Linen collection."""
    out: dict[tuple, tuple[str, Any]] = {}

    def walk(col, tree, prefix):
        if isinstance(tree, Mapping):
            for k, v in tree.items():
                walk(col, v, (*prefix, str(k)))
        else:
            assert prefix not in out, f"path {prefix} is in two collections"
            out[prefix] = (col, tree)

    for col, tree in flax.core.unfreeze(dict(variables)).items():
        walk(col, tree, ())
    return out


def load_variables(module: nnx.Module, variables: Mapping[str, Any]) -> set[str]:
    """Copy every Linen variable into ``module``, leaf by leaf.

    Every non-rng NNX variable must be found (same shape), and every Linen leaf
    must be used. Returns the set of collections seen.
    """
    flat = _flat_linen(variables)
    used: set[tuple] = set()
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Not(nnx.RngState))):
        key = tuple(str(p) for p in path)
        assert key in flat, f"NNX variable {key} has no Linen counterpart"
        _, value = flat[key]
        value = jnp.asarray(getattr(value, "value", value))  # nn.Partitioned boxes
        if isinstance(var, nnx.Variable):
            assert value.shape == jnp.shape(var.get_value()), key
            var.set_value(value)
        else:  # a raw array attribute: state, not a Variable
            assert value.shape == jnp.shape(var), key
            parent = _node(module, path[:-1])
            if isinstance(parent, tuple):
                # Immutable container (e.g. bijx's mask tuples): a constructor
                # constant, so it must already be equal.
                np.testing.assert_array_equal(np.asarray(var), np.asarray(value), str(key))
            elif isinstance(path[-1], int):
                parent[path[-1]] = value
            else:
                setattr(parent, path[-1], value)
        used.add(key)
    extra = set(flat) - used
    assert not extra, f"Linen variables the NNX module does not have: {sorted(extra)}"
    return {c for c, _ in flat.values()}


def reference(
    cls_or_factory: Any,
    variables: Mapping[str, Any],
    *,
    train: bool,
    rngs: Mapping[str, jax.Array] | None = None,
    streams: tuple[str, ...] = ("params", "dropout"),
) -> nnx.Module:
    """A pure NNX module: constructed directly, Linen variables copied in, seeded."""
    return load(construct(cls_or_factory, streams), variables, train=train, rngs=rngs)


def construct(cls_or_factory: Any, streams: tuple[str, ...]) -> nnx.Module:
    """``factory(nnx.Rngs(...))`` with the given streams (their seeds are replaced later)."""
    return cls_or_factory(nnx.Rngs(**{s: 100 + i for i, s in enumerate(streams)}))


def load(module: nnx.Module, variables: Mapping[str, Any], *, train: bool,
         rngs: Mapping[str, jax.Array] | None = None) -> nnx.Module:
    """Copy the Linen variables in, seed the rng streams, set the mode."""
    load_variables(module, variables)
    seed_streams(module, rngs)
    module.train() if train else module.eval()
    return module


def leaves(tree: Any) -> list[np.ndarray]:
    out = []
    for x in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def assert_close(a: Any, b: Any, *, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    sa = jax.tree_util.tree_structure(a)
    sb = jax.tree_util.tree_structure(b)
    assert sa == sb, f"different pytree structures:\n{sa}\n{sb}"
    for x, y in zip(leaves(a), leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, x.dtype, y.shape, y.dtype)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def differs(a: Any, b: Any) -> bool:
    return any(
        x.shape != y.shape or not np.allclose(x, y) for x, y in zip(leaves(a), leaves(b))
    )


# ---------------------------------------------------------------------------
# bijx flows (the package builds its flagship flows with factory functions).


class SplineCouplingFlow(nnx.Module):
    """bijx's flagship flow: ``Transformed(IndependentNormal, coupling_flow(...))``.

    A checkerboard coupling flow whose per-element transform is a
    ``ScanChain`` of ``n_copies`` monotone rational-quadratic splines (the stack is
    built by ``bijx.stack_bijections`` with ``nnx.split_rngs`` + ``nnx.vmap`` and
    run with ``jax.lax.scan``), conditioned by a ResNet.
    """

    def __init__(
        self,
        event_size: int = 4,
        knots: int = 4,
        n_coupling_layers: int = 2,
        n_copies: int = 2,
        width: int = 8,
        *,
        rngs: nnx.Rngs,
    ):
        import bijx

        flow = bijx.coupling_flow(
            event_size,
            lambda rngs: bijx.MonotoneRQSpline(knots, (), rngs=rngs),
            n_coupling_layers=n_coupling_layers,
            n_copies=n_copies,
            width=width,
            depth=1,
            bias_mode="zeros",
            rngs=rngs,
        )
        self.model = bijx.Transformed(bijx.IndependentNormal((event_size,), rngs=rngs), flow)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Log density of ``x`` under the flow."""
        return self.model.log_density(x)

    def sample(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """``batch_size`` samples and their log densities (draws the prior's rngs)."""
        return self.model.sample((batch_size,))

    def forward(self, x: jax.Array, log_density: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.model.bijection.forward(x, log_density)

    def reverse(self, y: jax.Array, log_density: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.model.bijection.reverse(y, log_density)


class RealNVPFlow(nnx.Module):
    """``Transformed(IndependentNormal, realnvp_flow(...))`` (affine couplings, no stacking)."""

    def __init__(self, event_size: int = 4, n_coupling_layers: int = 2, width: int = 8,
                 *, rngs: nnx.Rngs):
        import bijx

        flow = bijx.realnvp_flow(
            event_size,
            n_coupling_layers=n_coupling_layers,
            width=width,
            depth=1,
            final_kernel_init=nnx.initializers.normal(0.3),  # not the identity
            rngs=rngs,
        )
        self.model = bijx.Transformed(bijx.IndependentNormal((event_size,), rngs=rngs), flow)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.model.log_density(x)

    def sample(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        return self.model.sample((batch_size,))
