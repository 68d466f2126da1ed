import jax
import jax.numpy as jnp


def test_linear_wraps_and_matches(wrap):
    from flax import nnx

    Linear = wrap("flax.nnx:Linear").Linear
    x = jnp.arange(6.0).reshape(2, 3)
    model = Linear(3, 4)
    variables = model.init(jax.random.key(0), x)
    y = model.apply(variables, x)
    ref = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    ref.kernel.set_value(variables["params"]["kernel"])
    ref.bias.set_value(variables["params"]["bias"])
    assert jnp.array_equal(y, ref(x))
