"""Flagship third-party NNX models through generated wrappers == pure NNX (issue 13).

One or two flagship models per package, wrapped with nnxgen exactly as a user
would (``wrap("pkg.mod:Class")``), are compared number for number with a pure NNX
module built **directly** (the class called with ``nnx.Rngs``, the Linen
variables copied in leaf by leaf, its rng streams seeded so that their first
draws equal Linen's ``make_rng``; see ``tests/corpus_models_helpers.py``), in eval
and train mode, eagerly and under ``jax.jit``. ``nnxgen.runtime.to_nnx`` is only
a cross-check.

* bijx: ``Transformed(IndependentNormal, coupling_flow(...))`` (rational-quadratic
  spline couplings stacked with ``stack_bijections`` → ``nnx.vmap`` +
  ``ScanChain``): log density, forward/reverse, sampling from the prior's own
  ``sample`` stream; and ``Transformed(..., realnvp_flow(...))``: log density.
* nnx-ppo: an LSTM actor-critic, ``PPOAdapter(action=Sequential([Dense, LSTM,
  Dense, NormalTanhSampler]), value=Sequential([Dense, Dense]))``: a rollout with
  the explicit LSTM carry, sampling from the sampler's stored ``nnx.Rngs``, and
  the loss replay.
* mamba3-jax: ``Mamba3ForCausalLM``: full forward + loss, prefill + cached
  step-by-step decode (the package's cache is an explicit ``Mamba3Cache`` pytree
  threaded through ``__call__``), equal to pure NNX and to the full forward.
* lpips-nnx: ``LPIPS`` (VGG16 features + learned linear heads), with the VGG
  weight download replaced by local random weights (no network).
* heal-swin-nnx (needs Python ≥ 3.12, skipped elsewhere): ``SwinUnet`` with
  drop-path, dropout and attention dropout in training; its config, a plain
  (unhashable) dataclass, hits the layout cache (the constructor runs once).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnxgen import runtime as rt
from tests import corpus_models_helpers as H

K_INIT = jax.random.key(0)
K_A = jax.random.key(42)
K_B = jax.random.key(43)


pytestmark = pytest.mark.slow  # third-party models against pure NNX


def _x(shape, seed=1, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape)


def _split_static(args: tuple) -> tuple[tuple, tuple]:
    """(static python scalars as (index, value), the other arguments)."""
    static = tuple((i, a) for i, a in enumerate(args) if isinstance(a, (bool, int, float)))
    dynamic = tuple(a for a in args if not isinstance(a, (bool, int, float)))
    return static, dynamic


def _join(static: tuple, dynamic: tuple) -> list:
    out, it = [], iter(dynamic)
    fixed = dict(static)
    for i in range(len(static) + len(dynamic)):
        out.append(fixed[i] if i in fixed else next(it))
    return out


@dataclasses.dataclass
class Built:
    """A wrapper, its Linen variables, and how to build the same model in pure NNX."""

    model: Any  # the Linen wrapper instance
    variables: Mapping[str, Any]
    nnx_factory: Callable[[nnx.Rngs], nnx.Module]
    streams: tuple[str, ...]  # rng streams of the reference's nnx.Rngs
    _jitted: dict = dataclasses.field(default_factory=dict)

    def apply(self, *args, method="__call__", train, rngs=None, mutable=False,
              variables=None, jit=False, **kwargs):
        variables = self.variables if variables is None else variables

        static, dynamic = _split_static(args)

        def f(variables, rngs, *dynamic):
            return self.model.apply(variables, *_join(static, dynamic), method=method,
                                    train=train, rngs=rngs, mutable=mutable, **kwargs)

        if not jit:
            return f(variables, rngs, *dynamic)
        # One compilation per call signature (rng keys are arguments).
        key = (method, train, str(mutable), static, tuple(sorted(kwargs.items())))
        return self._jitted.setdefault(key, jax.jit(f))(variables, rngs, *dynamic)

    def reference(self, *, train, rngs=None, variables=None) -> nnx.Module:
        """The pure NNX module (constructed once, then cloned: some are slow to build)."""
        if "base" not in self._jitted:
            self._jitted["base"] = H.construct(self.nnx_factory, self.streams)
        return H.load(nnx.clone(self._jitted["base"]),
                      self.variables if variables is None else variables,
                      train=train, rngs=rngs)

    def run_reference(self, *args, method="__call__", train, rngs=None,
                      variables=None, jit=False, **kwargs):
        """(output, the module's state after the call) of the pure NNX reference."""
        module = self.reference(train=train, rngs=rngs, variables=variables)
        if not jit:
            return getattr(module, method)(*args, **kwargs), nnx.state(module)
        graphdef, state = nnx.split(module)
        static, dynamic = _split_static(args)

        def f(state, *dynamic):  # pure NNX under jit: merge, call, return new state
            m = nnx.merge(graphdef, state)
            return getattr(m, method)(*_join(static, dynamic), **kwargs), nnx.state(m)

        # Every reference of one mode has the same graph: compile once per signature.
        key = ("ref", method, train, static, tuple(sorted(kwargs.items())))
        out, new_state = self._jitted.setdefault(key, jax.jit(f))(state, *dynamic)
        return out, new_state

    def to_nnx(self, *, train, rngs=None) -> nnx.Module:
        return rt.to_nnx(self.model, self.variables, train=train, rngs=rngs)


MODES = [pytest.param(False, id="eval"), pytest.param(True, id="train")]
JIT = [pytest.param(False, id="eager"), pytest.param(True, id="jit")]
# For the models that are slow to compile or to run op by op on CPU: both modes
# and jit are covered, not every combination.
HEAVY = [
    pytest.param(False, False, id="eval-eager"),
    pytest.param(True, False, id="train-eager"),
    pytest.param(True, True, id="train-jit"),
]


# ===========================================================================

def _require(package: str) -> None:
    """Skip where ``package`` cannot be imported on this stack, saying why.

    (Not only absence: bijx 1.3.2 imports ``jax.experimental.ode.api_util``,
    which jax 0.12 removed, so bijx runs on the floor stack only.)
    """
    try:
        importlib.import_module(package)
    except ImportError as err:
        pytest.skip(f"{package} cannot be imported on this stack: {err}")


# bijx: normalizing flows.

FLOW_EVENT = 4


@pytest.fixture(scope="module")
def spline_flow(wrap) -> Built:
    _require("bijx")
    w = wrap("tests.corpus_models_helpers:SplineCouplingFlow")
    model = w.SplineCouplingFlow(event_size=FLOW_EVENT)
    x = _x((5, FLOW_EVENT))
    variables = model.init(K_INIT, x, train=False)
    return Built(model, variables,
                 lambda rngs: H.SplineCouplingFlow(event_size=FLOW_EVENT, rngs=rngs),
                 ("params", "dropout", "sample"))


@pytest.fixture(scope="module")
def realnvp(wrap) -> Built:
    _require("bijx")
    w = wrap("tests.corpus_models_helpers:RealNVPFlow")
    model = w.RealNVPFlow(event_size=FLOW_EVENT)
    variables = model.init(K_INIT, _x((5, FLOW_EVENT)), train=False)
    return Built(model, variables,
                 lambda rngs: H.RealNVPFlow(event_size=FLOW_EVENT, rngs=rngs),
                 ("params", "dropout", "sample"))


def _flow_params(*names):
    return [pytest.param(n, *p.values, id=f"{n}-{p.id}") for n in names for p in HEAVY]


@pytest.mark.parametrize("flow_name,train,jit", _flow_params("spline_flow", "realnvp"))
def test_bijx_flow_log_density_matches_pure_nnx(request, flow_name, train, jit):
    flow = request.getfixturevalue(flow_name)
    x = _x((5, FLOW_EVENT), seed=2)
    got = flow.apply(x, train=train, jit=jit)
    want, _ = flow.run_reference(x, train=train, jit=jit)
    H.assert_close(got, want)
    assert np.all(np.isfinite(np.asarray(got)))
    # The flow is not the identity: the density differs from the prior's.
    prior = jax.scipy.stats.norm.logpdf(x).sum(-1)
    assert H.differs(got, prior)
    if not jit:  # cross-check: the module apply runs
        H.assert_close(flow.to_nnx(train=train)(x), want)


def test_bijx_spline_flow_forward_reverse(spline_flow):
    b, train = spline_flow, True
    x = _x((5, FLOW_EVENT), seed=3)
    ld = jnp.zeros(5)
    y, ly = b.apply(x, ld, method="forward", train=train)
    (y_ref, ly_ref), _ = b.run_reference(x, ld, method="forward", train=train)
    H.assert_close((y, ly), (y_ref, ly_ref))
    xb, lb = b.apply(y, ly, method="reverse", train=train, jit=True)
    (xb_ref, lb_ref), _ = b.run_reference(y, ly, method="reverse", train=train)
    H.assert_close((xb, lb), (xb_ref, lb_ref))
    # The package's property: reverse inverts forward.
    np.testing.assert_allclose(np.asarray(xb), np.asarray(x), atol=1e-4)
    np.testing.assert_allclose(np.asarray(lb), 0.0, atol=1e-4)


@pytest.mark.parametrize("flow_name,train,jit", _flow_params("spline_flow"))
def test_bijx_flow_sample_matches_pure_nnx(request, flow_name, train, jit):
    """Sampling draws the prior's stored ``sample`` stream: same key, same samples."""
    flow = request.getfixturevalue(flow_name)
    rngs = {"sample": K_A}
    got = flow.apply(5, method="sample", train=train, rngs=rngs, jit=jit)
    want, _ = flow.run_reference(5, method="sample", train=train, rngs=rngs, jit=jit)
    H.assert_close(got, want)
    again = flow.apply(5, method="sample", train=train, rngs=rngs, jit=jit)
    H.assert_close(got, again, rtol=0, atol=0)
    other = flow.apply(5, method="sample", train=train, rngs={"sample": K_B}, jit=jit)
    assert H.differs(got[0], other[0])
    # The samples' log density is the flow's density at them.
    dens = flow.apply(got[0], train=train, jit=jit)
    np.testing.assert_allclose(np.asarray(dens), np.asarray(got[1]), atol=1e-4)
    if not jit:  # cross-check against to_nnx
        H.assert_close(flow.to_nnx(train=train, rngs=rngs).sample(5), want)


# ===========================================================================
# nnx-ppo: LSTM actor-critic.

OBS, ACT, HID, BATCH = 3, 2, 8, 4


def _ppo_nnx(rngs: nnx.Rngs):
    from nnx_ppo.networks.adapter import PPOAdapter
    from nnx_ppo.networks.containers import Sequential
    from nnx_ppo.networks.feedforward import Dense
    from nnx_ppo.networks.recurrent import LSTM
    from nnx_ppo.networks.sampling_layers import NormalTanhSampler

    actor = Sequential([
        Dense(OBS, HID, rngs, activation=nnx.tanh),
        LSTM(HID, HID, rngs),
        Dense(HID, 2 * ACT, rngs),
        NormalTanhSampler(rngs, entropy_weight=1e-2),
    ])
    critic = Sequential([Dense(OBS, HID, rngs, activation=nnx.tanh), Dense(HID, 1, rngs)])
    return PPOAdapter(action=actor, value=critic)


def _ppo_wrapper(w):
    actor = w.Sequential(layers=[
        w.Dense(OBS, HID, activation=nnx.tanh),
        w.LSTM(HID, HID),
        w.Dense(HID, 2 * ACT),
        # The sampler's ``rng: nnx.Rngs`` is filled from the Linen rng streams.
        w.NormalTanhSampler(entropy_weight=1e-2),
    ])
    critic = w.Sequential(layers=[w.Dense(OBS, HID, activation=nnx.tanh), w.Dense(HID, 1)])
    return w.PPOAdapter(action=actor, value=critic)


@pytest.fixture(scope="module")
def ppo(wrap) -> Built:
    _require("nnx_ppo")
    w = wrap(
        "nnx_ppo.networks.adapter:PPOAdapter",
        "nnx_ppo.networks.containers:Sequential",
        "nnx_ppo.networks.feedforward:Dense",
        "nnx_ppo.networks.recurrent:LSTM",
        "nnx_ppo.networks.sampling_layers:NormalTanhSampler",
    )
    model = _ppo_wrapper(w)
    state = _ppo_nnx(nnx.Rngs(0)).initialize_state(BATCH)
    variables = model.init({"params": K_INIT, "default": K_INIT}, state, _x((BATCH, OBS)),
                           train=False)
    return Built(model, variables, _ppo_nnx, ("params", "default"))


def _step_keys(n):
    return [jax.random.fold_in(K_A, t) for t in range(n)]


def test_ppo_initialize_state(ppo):
    got = ppo.apply(BATCH, method="initialize_state", train=False)
    want, _ = ppo.run_reference(BATCH, method="initialize_state", train=False)
    H.assert_close(got, want)


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("train", MODES)
def test_ppo_lstm_actor_rollout_matches_pure_nnx(ppo, train, jit):
    """A 2-step rollout threading the LSTM carry; then the loss replay."""
    obs = _x((2, BATCH, OBS), seed=5)
    state = ppo.apply(BATCH, method="initialize_state", train=False)
    state_ref = state
    extras = []
    for t, key in enumerate(_step_keys(2)):
        rngs = {"default": key}
        out = ppo.apply(state, obs[t], train=train, rngs=rngs, jit=jit)
        ref, _ = ppo.run_reference(state_ref, obs[t], train=train, rngs=rngs, jit=jit)
        H.assert_close(out, ref)
        state, state_ref = out.next_state, ref.next_state
        extras.append(out.rollout_extras)
    # The carry really moved.
    assert H.differs(state["action"][1], ppo.apply(BATCH, method="initialize_state",
                                                   train=False)["action"][1])
    # Loss replay: the stored raw actions are re-scored under the policy.
    init_state = ppo.apply(BATCH, method="initialize_state", train=False)
    rngs = {"default": K_B}
    out = ppo.apply(init_state, obs[0], extras[0], train=train, rngs=rngs, jit=jit)
    ref, _ = ppo.run_reference(init_state, obs[0], extras[0], train=train, rngs=rngs,
                               jit=jit)
    H.assert_close(out, ref)
    H.assert_close(out.rollout_extras, extras[0])
    if not jit:  # cross-check against to_nnx
        live = ppo.to_nnx(train=train, rngs=rngs)
        H.assert_close(live(init_state, obs[0], extras[0]), ref)


def test_ppo_sampling_rng(ppo):
    """Train: actions follow the ``default`` key. Eval: actions are the mean."""
    obs = _x((BATCH, OBS), seed=6)
    state = ppo.apply(BATCH, method="initialize_state", train=False)

    def act(train, key):
        return ppo.apply(state, obs, train=train, rngs={"default": key}).output.actions

    a, a_again, b = act(True, K_A), act(True, K_A), act(True, K_B)
    H.assert_close(a, a_again, rtol=0, atol=0)
    assert H.differs(a, b)
    H.assert_close(act(False, K_A), act(False, K_B))
    assert H.differs(a, act(False, K_A))


# ===========================================================================
# mamba3-jax: causal LM with cached decoding.

SEQ, PROMPT = 7, 3


def _mamba_cfg():
    from mamba3_jax import Mamba3Config

    # chunk_size < SEQ: the full forward takes the chunked SSD path.
    return Mamba3Config(vocab_size=32, hidden_size=16, state_size=8, head_dim=8,
                        chunk_size=4, num_hidden_layers=2)


@pytest.fixture(scope="module")
def mamba(wrap) -> Built:
    _require("mamba3_jax")
    from mamba3_jax import Mamba3ForCausalLM

    w = wrap("mamba3_jax:Mamba3ForCausalLM")
    cfg = _mamba_cfg()
    model = w.Mamba3ForCausalLM(cfg)
    ids = _ids()
    variables = model.init(K_INIT, ids, train=False)
    return Built(model, variables, lambda rngs: Mamba3ForCausalLM(cfg, rngs=rngs),
                 ("params",))


def _ids():
    return jax.random.randint(jax.random.key(7), (2, SEQ), 0, 32)


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("train", MODES)
def test_mamba3_forward_matches_pure_nnx(mamba, train, jit):
    ids = _ids()
    got = mamba.apply(ids, ids, train=train, jit=jit)
    want, _ = mamba.run_reference(ids, ids, train=train, jit=jit)
    H.assert_close(got, want)
    assert got["logits"].shape == (2, SEQ, 32)
    assert np.isfinite(float(got["loss"]))
    if not jit:  # cross-check against to_nnx
        H.assert_close(mamba.to_nnx(train=train)(ids, ids), want)


def test_mamba3_cached_decode_matches_pure_nnx_and_full_forward(mamba):
    """Prefill, then one token at a time with the returned cache (all jitted).

    (Mamba3 has no train-mode layer; both modes are compared in the forward test.)
    """
    from mamba3_jax import create_empty_cache

    train = False

    ids = _ids()

    def both(tok, cache):
        out = mamba.apply(tok, None, cache, train=train, jit=True)
        ref, _ = mamba.run_reference(tok, None, cache_ref[0], train=train, jit=True)
        H.assert_close(out, ref)
        cache_ref[0] = ref["cache"]
        return out

    cache_ref = [None]
    out = both(ids[:, :PROMPT], None)
    logits, cache = [out["logits"]], out["cache"]
    for t in range(PROMPT, SEQ):
        out = both(ids[:, t:t + 1], cache)
        logits.append(out["logits"])
        cache = out["cache"]
    logits = jnp.concatenate(logits, axis=1)

    # "Cached and non-cached generation produce identical tokens" (the package's
    # README): stepwise logits equal the full forward's, and so does the cache.
    full = mamba.apply(ids, train=train, jit=True)
    H.assert_close(logits, full["logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.argmax(logits, -1), np.argmax(full["logits"], -1))
    H.assert_close(cache, full["cache"], rtol=1e-4, atol=1e-4)

    # Decoding from the package's empty cache, all the way, gives the same numbers.
    cache = cache_ref[0] = create_empty_cache(mamba.model.cfg, 2)
    empty = []
    for t in range(SEQ):
        out = both(ids[:, t:t + 1], cache)
        empty.append(out["logits"])
        cache = out["cache"]
    H.assert_close(jnp.concatenate(empty, axis=1), full["logits"], rtol=1e-4, atol=1e-4)


# ===========================================================================
# lpips-nnx: LPIPS network forward (random VGG weights, no download).


def _fake_vgg16_weights():
    """VGG16 conv weights (HWIO) from a fixed numpy seed, in the loader's format."""
    chans = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
             (256, 256), (256, 512), (512, 512), (512, 512), (512, 512), (512, 512),
             (512, 512)]
    idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    g = np.random.default_rng(0)
    return {
        f"conv_{i}": {
            "kernel": jnp.asarray(g.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout)),
                                  jnp.float32),
            "bias": jnp.asarray(g.normal(0, 0.01, (cout,)), jnp.float32),
        }
        for i, (cin, cout) in zip(idx, chans)
    }


@pytest.fixture(scope="module")
def lpips(wrap):
    _require("lpips_nnx")
    import lpips_nnx.vgg
    import lpips_nnx.weights

    fake = _fake_vgg16_weights()

    def no_network(*a, **k):
        raise AssertionError("the test must not download weights")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lpips_nnx.vgg, "load_vgg16_weights", lambda: fake)
        mp.setattr(lpips_nnx.weights, "download_file", no_network)
        from lpips_nnx import LPIPS

        w = wrap("lpips_nnx:LPIPS")
        model = w.LPIPS()
        x, y = _images()
        variables = model.init(K_INIT, x, y, train=False)
        yield Built(model, variables, lambda rngs: LPIPS(rngs=rngs), ("params",)), fake


def _images():
    x = jnp.tanh(_x((2, 16, 16, 3), seed=8))
    y = jnp.tanh(_x((2, 16, 16, 3), seed=9))
    return x, y


def test_lpips_variables_hold_the_loaded_weights(lpips):
    """The constructor's in-place weight loading ends up in the Linen variables."""
    from lpips_nnx.weights import load_lpips_weights

    b, fake = lpips
    vgg = b.variables["params"]["vgg"]
    for name, w in fake.items():
        np.testing.assert_array_equal(np.asarray(vgg[name]["kernel"]), np.asarray(w["kernel"]))
        np.testing.assert_array_equal(np.asarray(vgg[name]["bias"]), np.asarray(w["bias"]))
    lins = load_lpips_weights()
    for i in range(5):
        np.testing.assert_array_equal(
            np.asarray(b.variables["params"]["lins"][i]["conv"]["kernel"]),
            np.asarray(lins[f"lin{i}"]))


@pytest.mark.parametrize("train,jit", HEAVY)
def test_lpips_matches_pure_nnx(lpips, train, jit):
    b, _ = lpips
    x, y = _images()
    got = b.apply(x, y, train=train, jit=jit)
    want, _ = b.run_reference(x, y, train=train)  # eager: VGG compiles slowly on CPU
    H.assert_close(got, want, rtol=1e-4 if jit else 1e-5)
    assert got.shape == (2, 1, 1, 1) and np.all(np.asarray(got) > 0)
    if not train:  # (LPIPS has no train-mode layer: once is enough)
        same = b.apply(x, x, train=train, jit=jit)
        np.testing.assert_allclose(np.asarray(same), 0.0, atol=1e-6)
        # normalize=True (inputs in [0, 1]).
        got = b.apply((x + 1) / 2, (y + 1) / 2, True, train=train, jit=jit)
        want2, _ = b.run_reference((x + 1) / 2, (y + 1) / 2, True, train=train)
        H.assert_close(got, want2)
        H.assert_close(got, want, rtol=1e-4, atol=1e-6)  # [0,1] -> [-1,1]: same images
    if not jit:  # cross-check against to_nnx
        H.assert_close(b.to_nnx(train=train)(x, y), want)


# ===========================================================================
# heal-swin-nnx: Swin U-Net with drop-path (Python >= 3.12 only).


def _swin_params():
    from heal_swin_nnx import SwinParams

    # Two stages: shifted-window attention with its mask at 4x4 tokens, patch merging,
    # patch expanding, skip connections; drop-path rate 0.5 at the last block.
    return SwinParams(img_size=8, in_channels=2, out_channels=3, patch_size=2,
                      window_size=2, embed_dim=8, depths=(2, 2), num_heads=(2, 2),
                      mlp_ratio=2.0, drop_rate=0.1, attn_drop_rate=0.1,
                      drop_path_rate=0.5, dtype="float32")


@pytest.fixture(scope="module")
def swin(wrap) -> Built:
    _require("heal_swin_nnx")
    from heal_swin_nnx import SwinUnet

    w = wrap("heal_swin_nnx:SwinUnet")
    model = w.SwinUnet(_swin_params())
    variables = model.init(K_INIT, _swin_x(), train=False)
    return Built(model, variables, lambda rngs: SwinUnet(_swin_params(), rngs=rngs),
                 ("params", "dropout"))


def _swin_x():
    return _x((2, 8, 8, 2), seed=10)


def test_swin_params_dataclass_hits_the_layout_cache(swin, monkeypatch):
    """``SwinParams`` is a plain (non-frozen, unhashable) dataclass, the kind of
    real config that used to make every apply re-trace the NNX constructor
    (issue 23): eager applies build the layout once, and an equal config in a new
    object (and a new wrapper) shares it; a mutated config gets its own."""
    from heal_swin_nnx import SwinUnet

    with pytest.raises(TypeError):
        hash(_swin_params())
    built = []
    init = SwinUnet.__init__

    @functools.wraps(init)
    def counting(self, *args, **kwargs):
        built.append(1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(SwinUnet, "__init__", counting)
    rt.clear_cache()
    x = _swin_x()
    outs = [swin.model.apply(swin.variables, x, train=False) for _ in range(3)]
    assert len(built) == 1
    H.assert_close(outs[0], outs[-1])
    type(swin.model)(_swin_params()).apply(swin.variables, x, train=False)
    assert len(built) == 1
    params = _swin_params()
    params.drop_path_rate = 0.25  # not the same module: traced again
    type(swin.model)(params).apply(swin.variables, x, train=False)
    assert len(built) == 2


@pytest.mark.parametrize("train,jit", HEAVY)
def test_swin_unet_matches_pure_nnx(swin, train, jit):
    x = _swin_x()
    rngs = {"dropout": K_A}
    got = swin.apply(x, train=train, rngs=rngs, jit=jit)
    # The reference runs eagerly (compiling this model twice is slow on CPU); the
    # jitted wrapper's XLA program fuses float32 reductions differently (seen:
    # |diff| ~3e-5 on O(1) outputs), hence the looser tolerance under jit.
    want, _ = swin.run_reference(x, train=train, rngs=rngs)
    tol = 1e-4 if jit else 1e-5
    H.assert_close(got, want, rtol=tol, atol=tol)
    assert got.shape == (2, 8, 8, 3)
    other = swin.apply(x, train=train, rngs={"dropout": K_B}, jit=jit)
    if train:  # drop-path / dropout follow the key
        assert H.differs(got, other)
        H.assert_close(swin.apply(x, train=True, rngs=rngs, jit=jit), got, rtol=0, atol=0)
    else:
        H.assert_close(got, other, rtol=0, atol=0)
    if not jit:  # cross-check against to_nnx
        H.assert_close(swin.to_nnx(train=train, rngs=rngs)(x), want, rtol=tol, atol=tol)
