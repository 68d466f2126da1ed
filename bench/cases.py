"""The benchmark's table of cases: what each implementation builds, inits and applies.

A :class:`Case` says how to construct the pure NNX module, the generated wrapper and
the ``nnx.bridge.to_linen`` wrapper, which input(s) to feed and in which modes.
``Case.prepare()`` builds them once and returns a :class:`Prepared` whose
``init_fn(impl)`` / ``fn(impl, mode)`` give the functions that the harness times:

* ``ForwardCase``: a forward pass ``model(x)``; ``eval`` (and ``train`` for models
  with a mode: dropout keys, ``mutable`` collections);
* ``DecodeCase``: one cached decode step; init is ``model.init(key, batch, length,
  method='init_cache')`` (pure NNX: construct, ``init_cache``, ``nnx.split``) and the
  step is ``apply(v, x_t, train=False, mutable=['cache'])`` (pure NNX: merge, call,
  return ``nnx.state(m, nnx.Cache)``).

An implementation that cannot run a case is left out of ``Prepared.impls`` and its
reason is in ``Case.missing`` (the table shows ``—``).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge

from nnxgen import generate as _generate

IMPLS = ("nnx", "nnxgen", "bridge")

# ---------------------------------------------------------------------------
# Models generated at run time (written to / wrapped into a temp dir, in-process).

DEEP_MODULE = "nnxgen_bench_models"
DEEP_SOURCE = '''\
"""Models used only by nnxgen's benchmark (written at run time)."""

from __future__ import annotations

import jax
from flax import nnx


class DeepMLP(nnx.Module):
    """``depth`` Linear layers with relu in between."""

    def __init__(self, din: int, width: int = 256, depth: int = 8, *, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [nnx.Linear(din if i == 0 else width, width, rngs=rngs) for i in range(depth)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nnx.relu(x)
        return x
'''

CONFIG_MODULE = "nnxgen_bench_config_models"
CONFIG_SOURCE = """\
\"\"\"Config-driven models used only by nnxgen's benchmark (written at run time).

As current NNX model code takes its hyper-parameters: a config dataclass holding
lists, which Python cannot hash (frozen for the ResNet, a plain dataclass for the LM).
\"\"\"

from __future__ import annotations

import dataclasses

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    in_channels: int = 3
    num_classes: int = 10
    stem_width: int = 16
    stage_sizes: list[int] = dataclasses.field(default_factory=lambda: [2, 2])
    widths: list[int] = dataclasses.field(default_factory=lambda: [16, 32])
    strides: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    kernel_size: tuple[int, int] = (3, 3)
    momentum: float = 0.9
    epsilon: float = 1e-5
    use_bias: bool = False
    activation: str = "relu"
    head_bias: bool = True


class Block(nnx.Module):
    def __init__(self, din: int, dout: int, stride: int, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        s = (stride, stride)
        conv = dict(kernel_size=cfg.kernel_size, use_bias=cfg.use_bias, rngs=rngs)
        norm = dict(momentum=cfg.momentum, epsilon=cfg.epsilon, rngs=rngs)
        self.conv1 = nnx.Conv(din, dout, strides=s, **conv)
        self.bn1 = nnx.BatchNorm(dout, **norm)
        self.conv2 = nnx.Conv(dout, dout, **conv)
        self.bn2 = nnx.BatchNorm(dout, **norm)
        if stride != 1 or din != dout:
            self.proj = nnx.data(nnx.Conv(din, dout, kernel_size=(1, 1), strides=s, use_bias=False, rngs=rngs))
        else:
            self.proj = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + (x if self.proj is None else self.proj(x)))


class ResNet(nnx.Module):
    \"\"\"A small ResNet built from a frozen config dataclass with lists.\"\"\"

    def __init__(self, cfg: ResNetConfig, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(cfg.in_channels, cfg.stem_width, kernel_size=cfg.kernel_size, use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(cfg.stem_width, momentum=cfg.momentum, epsilon=cfg.epsilon, rngs=rngs)
        blocks = []
        d = cfg.stem_width
        for n, w, st in zip(cfg.stage_sizes, cfg.widths, cfg.strides):
            for i in range(n):
                blocks.append(Block(d, w, st if i == 0 else 1, cfg, rngs=rngs))
                d = w
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(d, cfg.num_classes, use_bias=cfg.head_bias, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


@dataclasses.dataclass
class LMConfig:
    dim: int = 128
    heads: int = 4
    mlp_ratio: int = 4
    layer_types: list[str] = dataclasses.field(default_factory=lambda: ["attn", "mlp"] * 3)
    vocab: int = 512
    norm_eps: float = 1e-6
    use_bias: bool = False
    tie_embeddings: bool = False
    rope_theta: float = 10000.0
    max_len: int = 256
    dtype_name: str = "float32"
    extra: dict = dataclasses.field(default_factory=lambda: {"mlp_act": "gelu"})


class LM(nnx.Module):
    \"\"\"A small pre-norm decoder stack built from a plain (non-frozen) config dataclass.\"\"\"

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        layers, norms = [], []
        for kind in cfg.layer_types:
            norms.append(nnx.RMSNorm(cfg.dim, epsilon=cfg.norm_eps, rngs=rngs))
            if kind == "attn":
                layers.append(nnx.MultiHeadAttention(cfg.heads, cfg.dim, use_bias=cfg.use_bias, decode=False, rngs=rngs))
            else:
                layers.append(nnx.Sequential(
                    nnx.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim, use_bias=cfg.use_bias, rngs=rngs),
                    nnx.gelu,
                    nnx.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim, use_bias=cfg.use_bias, rngs=rngs),
                ))
        self.norms = nnx.List(norms)
        self.layers = nnx.List(layers)
        self.final_norm = nnx.RMSNorm(cfg.dim, epsilon=cfg.norm_eps, rngs=rngs)
        self.head = nnx.Linear(cfg.dim, cfg.vocab, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for norm, layer in zip(self.norms, self.layers):
            x = x + layer(norm(x))
        return self.head(self.final_norm(x))
"""


def setup_config_models(tmpdir: str) -> tuple[Any, Any]:
    """Write the config-driven models, generate their wrappers next to them, import both."""
    d = Path(tmpdir)
    (d / f"{CONFIG_MODULE}.py").write_text(CONFIG_SOURCE)
    _import_fresh(tmpdir, CONFIG_MODULE)
    out = d / f"{CONFIG_MODULE}_linen.py"
    out.write_text(
        _generate.generate([f"{CONFIG_MODULE}:ResNet", f"{CONFIG_MODULE}:LM"], str(out))
    )
    return _import_fresh(tmpdir, CONFIG_MODULE), _import_fresh(
        tmpdir, f"{CONFIG_MODULE}_linen"
    )


WILD_MODULE = "tests.fixtures.wildnnx.models"
WILD_CLASSES = ("ScannedStack", "CachedDecoder")
WILD_LINEN = "nnxgen_bench_wild_linen"


def _import_fresh(tmpdir: str, name: str):
    if tmpdir not in sys.path:
        sys.path.insert(0, tmpdir)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def setup_deep_mlp(tmpdir: str) -> tuple[type, type]:
    """Write the DeepMLP module, generate its wrapper next to it, import both."""
    d = Path(tmpdir)
    (d / f"{DEEP_MODULE}.py").write_text(DEEP_SOURCE)
    if tmpdir not in sys.path:
        sys.path.insert(0, tmpdir)
    importlib.invalidate_caches()
    out = d / f"{DEEP_MODULE}_linen.py"
    text = _generate.generate([f"{DEEP_MODULE}:DeepMLP"], str(out))
    out.write_text(text)
    nnx_mod = _import_fresh(tmpdir, DEEP_MODULE)
    linen_mod = _import_fresh(tmpdir, f"{DEEP_MODULE}_linen")
    return nnx_mod.DeepMLP, linen_mod.DeepMLP


def setup_wild(tmpdir: str) -> tuple[Any, Any]:
    """Wrap ``ScannedStack`` and ``CachedDecoder`` of the wild-NNX test fixtures."""
    out = Path(tmpdir) / f"{WILD_LINEN}.py"
    text = _generate.generate([f"{WILD_MODULE}:{c}" for c in WILD_CLASSES], str(out))
    out.write_text(text)
    return importlib.import_module(WILD_MODULE), _import_fresh(tmpdir, WILD_LINEN)


# ---------------------------------------------------------------------------
# Case specs.


def _eval_call(module, *args):
    module.eval()
    return module(*args)


def _train_call(module, *args):
    module.train()
    return module(*args)


@dataclasses.dataclass
class Case:
    """Common part of a case: the NNX class, its wrapper and constructor arguments."""

    name: str
    label: str
    nnx_cls: type
    wrapper_cls: type
    args: tuple
    kwargs: dict
    # implementation -> why it cannot run this case (shown as "—")
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    # per-case caps on repetitions (eager ``nnx.scan`` retraces its body every call)
    max_reps: dict[str, int] = dataclasses.field(default_factory=dict)
    # un-timed eager calls before the timed ones
    eager_warmup: int = 2

    @property
    def impls(self) -> tuple[str, ...]:
        return tuple(i for i in IMPLS if i not in self.missing)

    @property
    def modes(self) -> tuple[str, ...]:
        raise NotImplementedError

    # The mode whose pure-NNX eager apply is the forward pass that a first init
    # runs (None: the init method is not a forward pass).
    init_forward_mode: str | None = None

    def construct(self) -> nnx.Module:
        return self.nnx_cls(*self.args, **self.kwargs, rngs=nnx.Rngs(0))

    def prepare(self) -> Prepared:
        raise NotImplementedError


@dataclasses.dataclass
class ForwardCase(Case):
    """``model(x)``; with ``has_mode``: eval and train (dropout key, ``train_mutable``)."""

    x_shape: tuple = ()
    has_mode: bool = False
    train_mutable: tuple[str, ...] = ("batch_stats",)
    init_forward_mode: str | None = "eval"

    @property
    def modes(self) -> tuple[str, ...]:
        return ("eval", "train") if self.has_mode else ("eval",)

    def x(self) -> jax.Array:
        return jax.random.normal(jax.random.key(42), self.x_shape, jnp.float32)

    def prepare(self) -> Prepared:
        return ForwardImpls(self)


@dataclasses.dataclass
class DecodeCase(Case):
    """One cached decode step after ``init_cache(batch, length)``."""

    batch: int = 1
    length: int = 1
    dim: int = 1

    @property
    def modes(self) -> tuple[str, ...]:
        return ("step",)

    def x(self) -> jax.Array:
        return jax.random.normal(
            jax.random.key(42), (self.batch, 1, self.dim), jnp.float32
        )

    def construct(self) -> nnx.Module:
        m = super().construct()
        m.init_cache(self.batch, self.length)
        return m

    def prepare(self) -> Prepared:
        return DecodeImpls(self)


# ---------------------------------------------------------------------------
# Prepared implementations.


class Prepared:
    """Initialised models and jit-able functions of the implementations of one case."""

    case: Case

    @property
    def impls(self) -> tuple[str, ...]:
        return self.case.impls

    def init_fn(self, impl: str) -> Callable[[], Any]:
        raise NotImplementedError

    def fn(self, impl: str, mode: str) -> tuple[Callable[..., Any], tuple]:
        """A FRESH function object (so jit caches never hit) and its arguments."""
        raise NotImplementedError


class ForwardImpls(Prepared):
    case: ForwardCase

    def __init__(self, case: ForwardCase):
        self.case = case
        self.x = case.x()
        self.key = jax.random.key(0)
        self.dkey = jax.random.key(1)
        self.wrapper = case.wrapper_cls(*case.args, **case.kwargs)
        self.bridge = bridge.to_linen(case.nnx_cls, *case.args, **case.kwargs)
        self.bridge_eval = {"nnx_method": _eval_call} if case.has_mode else {}
        self.bridge_train = {"nnx_method": _train_call}
        self.train_mutable = list(case.train_mutable)
        self.nnx_split = {}
        for mode in case.modes:
            m = case.construct()
            if case.has_mode:
                m.eval() if mode == "eval" else m.train()
            self.nnx_split[mode] = nnx.split(m)
        self.w_vars = self.init_fn("nnxgen")()
        self.b_vars = self.init_fn("bridge")()

    def init_fn(self, impl: str) -> Callable[[], Any]:
        if impl == "nnx":
            return lambda: nnx.split(self.case.construct())[1]
        if impl == "nnxgen":
            return lambda: self.wrapper.init(self.key, self.x, train=False)
        return lambda: self.bridge.init(
            {"params": self.key, "dropout": self.dkey}, self.x, **self.bridge_eval
        )

    def fn(self, impl: str, mode: str) -> tuple[Callable[..., Any], tuple]:
        if impl == "nnx":
            graphdef, state = self.nnx_split[mode]
            if mode == "eval":

                def f(state, x):
                    return nnx.merge(graphdef, state)(x)
            else:

                def f(state, x):
                    m = nnx.merge(graphdef, state)
                    y = m(x)
                    return y, nnx.state(m, nnx.Not(nnx.Param))

            return f, (state, self.x)
        mutable = self.train_mutable
        if impl == "nnxgen":
            model = self.wrapper
            if mode == "eval":

                def f(v, x):
                    return model.apply(v, x, train=False)

                return f, (self.w_vars, self.x)

            def f(v, x, k):
                return model.apply(
                    v, x, train=True, rngs={"dropout": k}, mutable=mutable
                )

            return f, (self.w_vars, self.x, self.dkey)
        model = self.bridge
        if mode == "eval":
            kw = self.bridge_eval

            def f(v, x):
                return model.apply(v, x, **kw)

            return f, (self.b_vars, self.x)
        kw = self.bridge_train

        def f(v, x, k):
            return model.apply(v, x, rngs={"dropout": k}, mutable=mutable, **kw)

        return f, (self.b_vars, self.x, self.dkey)


Impls = ForwardImpls  # the name of this class before bench.py was split


class DecodeImpls(Prepared):
    case: DecodeCase

    def __init__(self, case: DecodeCase):
        self.case = case
        self.x = case.x()
        self.key = jax.random.key(0)
        self.wrapper = case.wrapper_cls(*case.args, **case.kwargs)
        self.nnx_split = {"step": nnx.split(case.construct())}
        self.w_vars = self.init_fn("nnxgen")()

    def init_fn(self, impl: str) -> Callable[[], Any]:
        c = self.case
        if impl == "nnx":
            return lambda: nnx.split(c.construct())[1]
        if impl == "nnxgen":
            return lambda: self.wrapper.init(
                self.key, c.batch, c.length, method="init_cache"
            )
        raise KeyError(impl)

    def fn(self, impl: str, mode: str) -> tuple[Callable[..., Any], tuple]:
        if impl == "nnx":
            graphdef, state = self.nnx_split[mode]

            def f(state, x_t):
                m = nnx.merge(graphdef, state)
                y = m(x_t)
                return y, nnx.state(m, nnx.Cache)

            return f, (state, self.x)
        if impl == "nnxgen":
            model = self.wrapper

            def f(v, x_t):
                return model.apply(v, x_t, train=False, mutable=["cache"])

            return f, (self.w_vars, self.x)
        raise KeyError(impl)


# ---------------------------------------------------------------------------
# The table.

ALL_CASES = (
    "mlp8",
    "mlp_bn",
    "transformer",
    "cnn",
    "resnet_cfg",
    "lm_cfg",
    "scan",
    "decode",
)

# nnx.bridge.to_linen cannot run the decode step: its init stores the module's
# variables *before* calling ``nnx_method`` (flax/nnx/bridge/wrappers.py,
# ToLinen.__call__), so ``init(..., nnx_method='init_cache')`` returns only
# ``params``; and every apply rebuilds the module with its constructor, which has
# no cache (``CachedDecoder.__call__`` then fails on ``self.steps``; an incoming
# ``cache`` collection is "unknown module paths").
BRIDGE_NO_METHOD_CACHE = (
    "to_linen drops variables created by a method (init_cache) and rebuilds the "
    "module without them on every apply"
)


def make_cases(tmpdir: str) -> list[Case]:
    from generated_examples import (
        cnn,
        cnn_linen,
        mlp,
        mlp_linen,
        transformer,
        transformer_linen,
    )

    deep_nnx, deep_linen = setup_deep_mlp(tmpdir)
    wild, wild_linen = setup_wild(tmpdir)
    cfgm, cfgm_linen = setup_config_models(tmpdir)
    return [
        ForwardCase(
            "mlp8",
            "(a) 8-layer MLP w256",
            deep_nnx,
            deep_linen,
            (256,),
            {"width": 256, "depth": 8},
            x_shape=(64, 256),
        ),
        ForwardCase(
            "mlp_bn",
            "(b) MLP BN+Dropout",
            mlp.MLP,
            mlp_linen.MLP,
            (128, 512, 128),
            {"dropout_rate": 0.1, "momentum": 0.9},
            x_shape=(64, 128),
            has_mode=True,
        ),
        ForwardCase(
            "transformer",
            "(c) TransformerBlock",
            transformer.TransformerBlock,
            transformer_linen.TransformerBlock,
            (4, 128, 512, 0.1),
            {},
            x_shape=(8, 64, 128),
            has_mode=True,
        ),
        ForwardCase(
            "cnn",
            "(d) CNN",
            cnn.CNN,
            cnn_linen.CNN,
            (3, 10, (16, 32), (3, 3)),
            {},
            x_shape=(8, 32, 32, 3),
        ),
        # Hyper-parameters in a config dataclass holding lists (unhashable):
        # frozen for the ResNet, a plain dataclass for the LM.
        ForwardCase(
            "resnet_cfg",
            "(g) ResNet, frozen cfg w/ lists",
            cfgm.ResNet,
            cfgm_linen.ResNet,
            (cfgm.ResNetConfig(),),
            {},
            x_shape=(8, 32, 32, 3),
            has_mode=True,
        ),
        ForwardCase(
            "lm_cfg",
            "(h) LM, plain dataclass cfg",
            cfgm.LM,
            cfgm_linen.LM,
            (cfgm.LMConfig(),),
            {},
            x_shape=(4, 64, 128),
        ),
        # nnx.split_rngs + nnx.vmap built, nnx.scan run; dropout in every block.
        # Un-jitted, nnx.scan traces and compiles its body on every call (~0.2 s
        # eval, ~0.6 s train of CPU, whatever the sizes), so every call is the
        # same (one warm-up suffices) and this case repeats its timings less often.
        ForwardCase(
            "scan",
            "(e) ScannedStack 8x256",
            wild.ScannedStack,
            wild_linen.ScannedStack,
            (256, 8),
            {"rate": 0.1},
            x_shape=(64, 256),
            has_mode=True,
            train_mutable=(),
            max_reps={"init": 7, "compile": 2, "eager": 3},
            eager_warmup=1,
        ),
        DecodeCase(
            "decode",
            "(f) CachedDecoder step",
            wild.CachedDecoder,
            wild_linen.CachedDecoder,
            (256, 4),
            {},
            missing={"bridge": BRIDGE_NO_METHOD_CACHE},
            batch=8,
            length=32,
            dim=256,
        ),
    ]
