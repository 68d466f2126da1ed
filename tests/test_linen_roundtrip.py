"""Both directions together: NNX -> Linen -> NNX, checkpoints, sharding, sown values.

- Round trip: ``tests/fixtures/linengen/roundtrip.py``'s ``Hybrid`` is pure NNX
  holding the committed generated NNX wrapper of a Linen MLP
  (``generated_examples.linen_mlp_nnx.MLP``, BatchNorm + Dropout, initialised
  in the constructor with ``nnx.bridge.lazy_init``) and an ``nnx.Linear``. Its
  generated Linen wrapper passes ``ruff check`` / ``ruff format --check``;
  ``init`` makes the variables of a pure ``Hybrid`` built from the same params
  key; ``apply`` equals the pure ``Hybrid`` loaded with those variables in
  eval and in train (dropout keys: the wrapper's documented seeding, the first
  draw of a stream is Linen's ``make_rng``), and the ``batch_stats`` that
  ``mutable=["batch_stats"]`` returns are the pure module's after the same
  step (also on a second step). ``LazyHybrid`` (the legacy MLP makes its
  variables on its first call) applies like the same network built eagerly,
  in train and eval (``apply`` rebuilds the module and attaches the Linen
  part's variables in ToNNX's layout).
- Checkpoints: the state of a generated NNX wrapper (Encoder and MLP, trained
  batch statistics included) loads into ``nnx.bridge.ToNNX`` after its
  ``lazy_init`` and the other way round (same paths, types and outputs);
  ``nnx.to_pure_dict`` -> msgpack bytes -> ``nnx.replace_by_pure_dict`` into a
  wrapper with other weights; orbax ``StandardCheckpointer`` save / restore
  into an abstract ``nnx.eval_shape`` wrapper.
- Sharding (Encoder): ``nnx.get_partition_spec`` gives
  ``P("embed", "mlp")`` for the logically partitioned kernel (mapped by
  ``nn.logical_axis_rules``), the whole tree and the kernel's ``out_sharding``
  metadata equal ``ToNNX``'s; in a subprocess with 4 host CPU devices
  (``jax.set_mesh`` + ``nn.logical_axis_rules``) an ``nnx.jit`` init shards the
  kernel across the ("data", "model") mesh, through
  ``with_sharding_constraint`` of the partition specs and through flax's eager
  sharding, as ``ToNNX`` does, with the numbers of an unsharded model.
- Sown values (Encoder): after a call the "attention" intermediate is the
  wrapper's ``attention`` attribute (ToNNX's layout; ToNNX with
  ``mutable=["intermediates"]`` holds the same), equal to Linen's
  ``apply(..., mutable=["intermediates"])``, one value per call (no
  accumulation); an initialising first call sows nothing (Linen's ``init``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx, serialization
from jax.sharding import PartitionSpec as P

from nnxgen.runtime import NnxgenError
from tests.helpers import ROOT, load_variables, ruff
from tests.test_numerics import probe_keys, seed_streams

FIXTURES = ROOT / "tests" / "fixtures"
K_INIT = jax.random.key(0)
K_DROP = jax.random.key(42)
X = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)  # [batch, din] for the MLPs
TOK = jnp.array([[1, 2, 3, 0], [4, 5, 6, 7]])  # [batch, length] for the Encoder
#: What a checkpoint holds (not rng streams, not sown values).
WEIGHTS = nnx.Any(nnx.Param, nnx.BatchStat)


pytestmark = pytest.mark.slow  # orbax checkpoints, a 4-device mesh


@pytest.fixture(scope="module")
def fixtures_on_path():
    sys.path.insert(0, str(FIXTURES))
    yield
    sys.path.remove(str(FIXTURES))


@pytest.fixture(scope="module")
def H(wrap, fixtures_on_path):
    """The generated Linen wrappers of ``linengen.roundtrip``."""
    return wrap("linengen.roundtrip:Hybrid")


@pytest.fixture
def no_eager_sharding():
    """No mesh here: keep the logically partitioned kernel unsharded."""
    with nnx.use_eager_sharding(False):
        yield


def _close(a: Any, b: Any, atol: float = 1e-6) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=atol)


def _flat(model: nnx.Module) -> dict[tuple, tuple[type, np.ndarray]]:
    """path -> (variable type, value) of a module's parameters and statistics."""
    return {
        tuple(path): (type(v), np.asarray(v.get_value()))
        for path, v in nnx.to_flat_state(nnx.state(model, WEIGHTS))
    }


# ---------------------------------------------------------------------------
# 1. NNX (holding a generated NNX wrapper of Linen) -> generated Linen wrapper.


def _pure_hybrid(variables: Mapping[str, Any], *, train: bool, rngs=None):
    """The pure NNX ``Hybrid`` with ``variables`` loaded, its dropout stream seeded
    as the Linen wrapper documents (first draw = Linen's ``make_rng('dropout')``)."""
    from linengen.roundtrip import Hybrid

    ref = Hybrid(3, 4, rngs=nnx.Rngs(params=1, dropout=2))
    load_variables(ref, variables)
    seed_streams(ref, rngs)
    ref.train() if train else ref.eval()
    return ref


def test_hybrid_linen_wrapper_is_clean(H):
    path = H.__file__
    lint = ruff("check", "--no-cache", "--isolated", path)
    assert lint.returncode == 0, lint.stdout
    fmt = ruff("format", "--check", "--no-cache", "--isolated", path)
    assert fmt.returncode == 0, fmt.stdout
    assert issubclass(H.Hybrid, nn.Module)
    fields = [f for f in H.Hybrid.__dataclass_fields__ if f not in ("parent", "name")]
    assert fields == ["din", "d", "dropout_rate"]


@pytest.fixture(scope="module")
def hybrid(H):
    model = H.Hybrid(din=3, d=4)
    return model, model.init(K_INIT, X, train=False)


def test_hybrid_init_is_pure_nnx_from_the_params_key(hybrid):
    from linengen.roundtrip import Hybrid

    _, v = hybrid
    (key,) = probe_keys({"params": K_INIT}, {"params": 1})["params"]
    ref = Hybrid(3, 4, rngs=nnx.Rngs(params=key))
    expected = {
        ("params", *p): np.asarray(x.get_value())
        for p, x in nnx.to_flat_state(nnx.state(ref, nnx.Param))
    } | {
        ("batch_stats", *p): np.asarray(x.get_value())
        for p, x in nnx.to_flat_state(nnx.state(ref, nnx.BatchStat))
    }
    got = {
        tuple(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(dict(v))[0]
    }
    assert got.keys() == {tuple(map(str, p)) for p in expected}
    assert ("params", "legacy", "dense1", "kernel") in got  # the Linen MLP's names
    for path, value in expected.items():
        np.testing.assert_array_equal(got[tuple(map(str, path))], value)


def test_hybrid_eval_apply_equals_pure_nnx(hybrid):
    model, v = hybrid
    # Non-trivial running statistics first (eval must normalise with them).
    _, upd = model.apply(
        v, X, train=True, rngs={"dropout": K_DROP}, mutable=["batch_stats"]
    )
    v = {**v, **upd}
    y = model.apply(v, X, train=False)
    ref = _pure_hybrid(v, train=False)
    _close(y, ref(X))
    y_upd, same = model.apply(v, X, train=False, mutable=["batch_stats"])
    _close(y_upd, y)
    _close(same["batch_stats"], v["batch_stats"])  # eval leaves them alone
    y_train = model.apply(v, X, train=True, rngs={"dropout": K_DROP})
    assert not np.allclose(y, y_train)


def test_hybrid_train_apply_and_batch_stats_equal_pure_nnx(hybrid):
    model, v = hybrid
    rngs = {"dropout": K_DROP}
    y, upd = model.apply(v, X, train=True, rngs=rngs, mutable=["batch_stats"])
    ref = _pure_hybrid(v, train=True, rngs=rngs)
    _close(y, ref(X))
    expected = nnx.to_pure_dict(nnx.state(ref, nnx.BatchStat))
    _close(upd["batch_stats"], expected)
    assert not np.allclose(
        upd["batch_stats"]["legacy"]["bn"]["mean"],
        v["batch_stats"]["legacy"]["bn"]["mean"],
    )  # the step moved the statistics
    # Dropout is on and follows the Linen rng.
    y_other = model.apply(v, X, train=True, rngs={"dropout": jax.random.key(7)})
    assert not np.allclose(y, y_other)
    assert np.any(np.asarray(ref.legacy.to_nnx__rngs.dropout.count) != 0)
    # A second step continues from the returned statistics.
    v2 = {**v, **upd}
    y2, upd2 = model.apply(v2, X, train=True, rngs=rngs, mutable=["batch_stats"])
    ref2 = _pure_hybrid(v2, train=True, rngs=rngs)
    _close(y2, ref2(X))
    _close(upd2["batch_stats"], nnx.to_pure_dict(nnx.state(ref2, nnx.BatchStat)))


def test_lazy_hybrid_applies_like_pure_nnx(wrap, fixtures_on_path):
    """The Linen part makes its variables on its first call (no lazy_init in the
    constructor): apply rebuilds the module and attaches them in ToNNX's layout."""
    from linengen.roundtrip import Hybrid

    L = wrap("linengen.roundtrip:LazyHybrid")
    model = L.LazyHybrid(din=3, d=4)
    v = model.init(K_INIT, X, train=False)
    assert "legacy" in v["params"] and "legacy" in v["batch_stats"]
    rngs = {"dropout": K_DROP}
    y, upd = model.apply(v, X, train=True, rngs=rngs, mutable=["batch_stats"])
    # the same network, built eagerly (Hybrid's legacy MLP: lazy_init in __init__)
    ref = Hybrid(3, 4, dropout_rate=0.1, rngs=nnx.Rngs(params=1, dropout=2))
    load_variables(ref, v)
    seed_streams(ref, rngs)
    ref.train()
    _close(y, ref(X))
    _close(upd["batch_stats"], nnx.to_pure_dict(nnx.state(ref, nnx.BatchStat)))
    v = {**v, **upd}
    ref = Hybrid(3, 4, dropout_rate=0.1, rngs=nnx.Rngs(params=1, dropout=2))
    load_variables(ref, v)
    ref.eval()
    _close(model.apply(v, X, train=False), ref(X))


def test_hybrid_train_without_dropout_rng_raises(hybrid):
    """Plain Linen raises for a Dropout with no ``dropout`` rng; so does the wrapper
    (not Linen's fallback to a ``params`` stream holding a fixed key)."""
    model, v = hybrid
    with pytest.raises(NnxgenError) as err:
        model.apply(v, X, train=True, mutable=["batch_stats"])
    assert str(err.value) == (
        "Hybrid: the NNX module draws from the rng stream 'dropout' in training, but no "
        "'dropout' rng was passed: call apply(..., rngs={'dropout': key})."
    )
    # a params rng passed by the caller serves, as Linen's fallback does: masks vary
    ys = [
        model.apply(v, X, train=True, rngs={"params": k}, mutable=["batch_stats"])[0]
        for k in (K_DROP, jax.random.key(7))
    ]
    assert not np.allclose(ys[0], ys[1])
    model.apply(v, X, train=False)  # eval draws nothing


# ---------------------------------------------------------------------------
# 2. Checkpoints: generated NNX wrapper <-> ToNNX, pure dicts, orbax.


def _encoder(seed: int, *, tonnx: bool = False) -> nnx.Module:
    from generated_examples import linen_encoder, linen_encoder_nnx

    kw: dict[str, Any] = {"vocab": 8, "d": 8, "heads": 2}
    rngs = nnx.Rngs(seed)
    if tonnx:
        return nnx.bridge.ToNNX(linen_encoder.Encoder(**kw), rngs=rngs).lazy_init(TOK)
    return nnx.bridge.lazy_init(linen_encoder_nnx.Encoder(**kw, rngs=rngs), TOK)


def _mlp(seed: int, *, tonnx: bool = False) -> nnx.Module:
    from generated_examples import linen_mlp, linen_mlp_nnx

    rngs = nnx.Rngs(seed)
    if tonnx:
        m = nnx.bridge.ToNNX(linen_mlp.MLP(8, 4), rngs=rngs).lazy_init(X, train=False)
        m(X, train=True, mutable=["batch_stats"])  # a training step: real statistics
        return m
    m = nnx.bridge.lazy_init(linen_mlp_nnx.MLP(8, 4, rngs=rngs), X, train=False)
    m(X, train=True)
    return m


#: name -> (make(seed, tonnx=...), eval output)
MODELS: dict[str, tuple[Callable[..., nnx.Module], Callable[[nnx.Module], Any]]] = {
    "Encoder": (_encoder, lambda m: m(TOK, deterministic=True)),
    "MLP": (_mlp, lambda m: m(X, train=False)),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("direction", ["wrapper->ToNNX", "ToNNX->wrapper"])
def test_state_moves_between_wrapper_and_tonnx(name, direction, no_eager_sharding):
    make, run = MODELS[name]
    src_is_tonnx = direction.startswith("ToNNX")
    src = make(0, tonnx=src_is_tonnx)
    dst = make(1, tonnx=not src_is_tonnx)
    flat_src, flat_dst = _flat(src), _flat(dst)
    assert {p: t for p, (t, _) in flat_src.items()} == {
        p: t for p, (t, _) in flat_dst.items()
    }  # same layout
    assert not all(np.array_equal(flat_src[p][1], flat_dst[p][1]) for p in flat_src)
    state = nnx.state(src, WEIGHTS)
    y_src = run(src)
    assert not np.allclose(y_src, run(dst))
    nnx.update(dst, state)
    for p, (_, value) in flat_src.items():
        np.testing.assert_array_equal(_flat(dst)[p][1], value)
    _close(run(dst), y_src)


@pytest.mark.parametrize("name", MODELS)
def test_pure_dict_msgpack_round_trip(name, no_eager_sharding):
    make, run = MODELS[name]
    src, dst = make(0), make(1)
    pure = nnx.to_pure_dict(nnx.state(src, WEIGHTS))
    restored = serialization.msgpack_restore(serialization.msgpack_serialize(pure))
    state = nnx.state(dst, WEIGHTS)
    assert not np.allclose(run(src), run(dst))
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(dst, state)
    _close(run(dst), run(src))


def test_orbax_restores_into_an_abstract_wrapper(tmp_path, no_eager_sharding):
    ocp = pytest.importorskip("orbax.checkpoint")
    from generated_examples.linen_encoder_nnx import Encoder

    src = _encoder(0)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / "ckpt", nnx.state(src))
    abstract = nnx.eval_shape(lambda: _encoder(1))
    graphdef, abstract_state = nnx.split(abstract)
    assert all(
        isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract_state)
    )
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(tmp_path / "ckpt", abstract_state)
    model = nnx.merge(graphdef, state)
    assert isinstance(model, Encoder)
    _close(model(TOK, deterministic=True), src(TOK, deterministic=True))
    np.testing.assert_array_equal(
        jax.random.key_data(model.to_nnx__rngs.default.key.get_value()),
        jax.random.key_data(src.to_nnx__rngs.default.key.get_value()),
    )


# ---------------------------------------------------------------------------
# 3. Sharding metadata and a 4-device mesh.


def test_partition_specs_and_metadata_equal_tonnx(no_eager_sharding):
    model, ref = _encoder(0), _encoder(0, tonnx=True)
    specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    assert specs["Dense_0"]["kernel"].get_value() == P("embed", "mlp")
    assert specs["Dense_1"]["kernel"].get_value() == P()  # not annotated
    assert jax.tree.leaves(specs) == jax.tree.leaves(
        nnx.get_partition_spec(nnx.state(ref, nnx.Param))
    )
    kernel, ref_kernel = model.Dense_0["kernel"], ref.Dense_0["kernel"]
    assert type(kernel) is nnx.Param
    assert kernel.get_metadata()["out_sharding"] == ("embed", "mlp")
    assert kernel.get_metadata() == ref_kernel.get_metadata()
    with nn.logical_axis_rules((("embed", "data"), ("mlp", "model"))):
        mapped = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    assert mapped["Dense_0"]["kernel"].get_value() == P("data", "model")


MESH_SCRIPT = textwrap.dedent(
    """
    import json

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import linen as nn
    from flax import nnx
    from jax.sharding import Mesh

    from generated_examples.linen_encoder import Encoder as LinenEncoder
    from generated_examples.linen_encoder_nnx import Encoder

    RULES = (("embed", "data"), ("mlp", "model"))
    TOK = jnp.array([[1, 2, 3, 0], [4, 5, 6, 7]])
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
    out = {"devices": len(jax.devices())}


    def describe(var):
        v = var.get_value()
        shards = sorted({tuple(s.data.shape) for s in v.addressable_shards})
        return {"spec": str(tuple(v.sharding.spec)), "shards": shards,
                "devices": len({s.device for s in v.addressable_shards})}


    with nnx.use_eager_sharding(False):
        @nnx.jit
        def create():
            m = Encoder(vocab=8, d=8, heads=2, rngs=nnx.Rngs(0))
            nnx.bridge.lazy_init(m, TOK)
            state = nnx.state(m)
            pspecs = nnx.get_partition_spec(state)
            state = jax.lax.with_sharding_constraint(state, pspecs)
            nnx.update(m, state)
            return m

        with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
            m = create()
        out["constraint"] = describe(m.Dense_0["kernel"])
        out["replicated"] = describe(m.Dense_1["kernel"])
        plain = nnx.bridge.lazy_init(Encoder(vocab=8, d=8, heads=2, rngs=nnx.Rngs(0)), TOK)
        out["same_values"] = bool(np.array_equal(
            np.asarray(m.Dense_0["kernel"].get_value()),
            np.asarray(plain.Dense_0["kernel"].get_value())))
        y_plain = plain(TOK)

    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):  # flax's eager sharding
        e = nnx.jit(lambda: nnx.bridge.lazy_init(
            Encoder(vocab=8, d=8, heads=2, rngs=nnx.Rngs(0)), TOK))()
        out["eager"] = describe(e.Dense_0["kernel"])
        t = nnx.bridge.ToNNX(LinenEncoder(vocab=8, d=8, heads=2), rngs=nnx.Rngs(0))
        t = nnx.jit(lambda t: nnx.bridge.lazy_init(t, TOK))(t)
        out["tonnx"] = describe(t.Dense_0["kernel"])
        y = nnx.jit(lambda m, x: m(x))(e, TOK)
        out["max_diff"] = float(jnp.max(jnp.abs(y - y_plain)))
    print(json.dumps(out))
    """
)


def test_four_device_mesh_sharded_init(tmp_path):
    script = tmp_path / "encoder_mesh.py"
    script.write_text(MESH_SCRIPT, encoding="utf-8")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    res = subprocess.run(
        [sys.executable, str(script)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    sharded = {"spec": "('data', 'model')", "shards": [[4, 8]], "devices": 4}
    assert out["constraint"] == sharded  # kernel (8, 16) over a 2 x 2 mesh
    assert out["eager"] == sharded
    assert out["tonnx"] == sharded
    assert out["replicated"] == {"spec": "()", "shards": [[16, 8]], "devices": 4}
    assert out["same_values"]
    assert out["max_diff"] < 1e-5


# ---------------------------------------------------------------------------
# 4. Sown values.


def test_sown_attention_equals_linen_and_does_not_accumulate(no_eager_sharding):
    from generated_examples.linen_encoder import Encoder as LinenEncoder

    model = _encoder(0)
    assert not hasattr(model, "attention")  # lazy_init: Linen's init sows nothing
    y = model(TOK, deterministic=True)
    sown = model.attention
    assert isinstance(sown, nnx.Intermediate)
    (h,) = sown.get_value()  # Linen's sow: a tuple, one value per call
    assert h.shape == (2, 4, 8)

    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    y_linen, linen_vars = LinenEncoder(vocab=8, d=8, heads=2).apply(
        {"params": params}, TOK, mutable=["intermediates"]
    )
    _close(y, y_linen)
    (h_linen,) = linen_vars["intermediates"]["attention"]
    _close(h, h_linen)

    ref = _encoder(0, tonnx=True)
    ref(TOK, deterministic=True, mutable=["intermediates"])
    (h_ref,) = ref.attention.get_value()
    _close(h, h_ref)

    # A second call on other tokens replaces the value (no accumulation).
    other = (TOK + 1) % 8
    model(other, deterministic=True)
    (h2,) = model.attention.get_value()
    _, linen_vars2 = LinenEncoder(vocab=8, d=8, heads=2).apply(
        {"params": params}, other, mutable=["intermediates"]
    )
    _close(h2, linen_vars2["intermediates"]["attention"][0])
    assert not np.allclose(h2, h)
    # Sown values are not parameters: the Linen variables the wrapper applies
    # with are the same after the calls.
    _close(nnx.to_pure_dict(nnx.state(model, nnx.Param)), params)


def test_initialising_call_sows_nothing_then_sows(no_eager_sharding):
    from generated_examples.linen_encoder_nnx import Encoder

    model = Encoder(vocab=8, d=8, heads=2, rngs=nnx.Rngs(0))
    model(TOK, deterministic=True)  # first call: Linen init_with_output
    assert not hasattr(model, "attention")
    model(TOK, deterministic=True)
    assert len(model.attention.get_value()) == 1
