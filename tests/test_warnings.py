"""No warning from nnxgen's code or generated modules (pyproject's filterwarnings).

The suite turns every warning attributed to ``nnxgen.*`` or a generated module,
and flax's deprecations of the APIs the runtime replaced (the ``.value``
setter, ``sow`` outside ``nnx.capture``), into errors. These tests prove the
configuration bites, and that a sowing NNX module runs through a wrapper
without the ``sow`` deprecation (the runtime captures sown values).
"""

from __future__ import annotations

import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


class Sub(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(2, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.linear(x)
        self.sow(nnx.Intermediate, "h", h)
        return h


class Top(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.sub = Sub(rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.sub(x) * 2.0
        self.sow(nnx.Intermediate, "y", y)
        return y


X = jnp.arange(4.0).reshape(2, 2)


def test_sowing_module_through_a_wrapper_warns_nothing(wrap):
    W = wrap("tests.test_warnings:Top")
    model = W.Top()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        variables = model.init(jax.random.key(0), X, train=False)
        y, state = model.apply(variables, X, train=False, mutable=["intermediates"])
        y2 = model.apply(variables, X, train=False)  # immutable: sows dropped
    ref = Top(rngs=nnx.Rngs(0))
    ref.sub.linear.kernel.set_value(variables["params"]["sub"]["linear"]["kernel"])
    ref.sub.linear.bias.set_value(variables["params"]["sub"]["linear"]["bias"])
    out, sown = nnx.capture(ref, nnx.Intermediate)(X)
    np.testing.assert_allclose(y, out, rtol=1e-6)
    np.testing.assert_allclose(y2, out, rtol=1e-6)
    inter = state["intermediates"]
    np.testing.assert_allclose(inter["y"][0], sown["y"].get_value()[0], rtol=1e-6)
    np.testing.assert_allclose(inter["sub"]["h"][0], sown["sub"]["h"].get_value()[0], rtol=1e-6)


def _warn_from(module_name: str, category=DeprecationWarning) -> None:
    mod = types.ModuleType(module_name)
    exec(
        compile("import warnings\ndef f(c):\n    warnings.warn('probe', c)\n", "<probe>", "exec"),
        mod.__dict__,
    )
    mod.f(category)


@pytest.mark.parametrize(
    "module_name",
    ["nnxgen", "nnxgen.runtime", "generated_examples.mlp_linen", "w_probe_models", "nasty_linen"],
)
@pytest.mark.parametrize("category", [DeprecationWarning, UserWarning, FutureWarning])
def test_a_warning_from_nnxgen_or_a_generated_module_fails_the_suite(module_name, category):
    with pytest.raises(category, match="probe"):
        _warn_from(module_name, category)


def test_a_warning_from_other_code_does_not():
    with pytest.warns(DeprecationWarning, match="probe"):
        _warn_from("some_library.module")


@pytest.mark.parametrize(
    "message",
    [
        "'.value' setter is now deprecated. For Variable[Array] instances use: ...",
        "Using 'Module.sow()' outside of 'nnx.capture()' is deprecated; see ...",
    ],
)
def test_flax_deprecations_of_apis_nnxgen_replaced_fail_the_suite_from_anywhere(message):
    with pytest.raises(DeprecationWarning):
        warnings.warn(message, DeprecationWarning)
