"""Cases of ``linen_bench.py``: Linen modules, their generated NNX wrappers and ToNNX.

A :class:`LinenCase` names a Linen class, its generated NNX wrapper (same
constructor arguments), an input, the Linen argument that carries the mode (if
any) and the modes to run. :meth:`LinenCase.prepare` initialises all three
implementations once and returns a :class:`PreparedLinen` whose

* ``build(impl)`` builds and initialises a fresh model (Linen: ``module.init``;
  nnxgen: the constructor + ``nnx.bridge.lazy_init``; tonnx:
  ``ToNNX(...).lazy_init``); ``init_fn(impl)`` is that and the model's state leaves,
* ``fn(impl, mode)`` gives a FRESH pure function and its arguments (to trace,
  lower, compile and call jitted),
* ``eager(impl, mode)`` gives the un-jitted call (Linen: ``apply``; NNX: ``model(x)``
  on the live, stateful model),
* ``nnx_jit(impl, mode)`` gives an ``nnx.jit``-ed call of the live model (Linen:
  the ``jax.jit``-ed apply, Linen's own idiom).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge
from models import setup_linen_deep_mlp

from generated_examples import (
    linen_cnn,
    linen_cnn_nnx,
    linen_encoder,
    linen_encoder_nnx,
    linen_mlp,
    linen_mlp_nnx,
)

IMPLS = ("linen", "nnxgen", "tonnx")
ALL_CASES = ("mlp", "encoder", "cnn", "deep")

#: Linen arguments that carry the mode, and whether True means "training" (as a
#: Linen / ToNNX user passes them by hand).
MODE_ARGUMENTS = {
    "deterministic": False,
    "use_running_average": False,
    "train": True,
    "training": True,
}

# ---------------------------------------------------------------------------
# Case spec.


@dataclasses.dataclass
class LinenCase:
    name: str
    label: str
    linen_cls: type
    wrapper_cls: type
    args: tuple
    kwargs: dict
    make_x: Callable[[], jax.Array]
    #: the Linen argument that carries the mode (None: the model has no mode)
    mode_arg: str | None = None
    #: mode name -> training?
    modes: dict[str, bool] = dataclasses.field(default_factory=lambda: {"eval": False})
    #: rng streams besides params (seed each); ``dropout`` means train needs a key
    streams: dict[str, int] = dataclasses.field(default_factory=dict)
    #: collections that change in training (Linen / ToNNX ``mutable=``)
    train_mutable: tuple[str, ...] = ("batch_stats",)
    #: the context the whole case runs in (set up, init and every call)
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    #: what the harness reads of every case (none apply here)
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    max_reps: dict[str, int] = dataclasses.field(default_factory=dict)
    eager_warmup: int = 2

    def mode_kwargs(self, mode: str) -> dict[str, bool]:
        """The mode argument as a Linen / ToNNX user passes it by hand."""
        if self.mode_arg is None:
            return {}
        training = self.modes[mode]
        return {
            self.mode_arg: training if MODE_ARGUMENTS[self.mode_arg] else not training
        }

    def linen_module(self):
        return self.linen_cls(*self.args, **self.kwargs)

    def rngs(self) -> nnx.Rngs:
        return nnx.Rngs(0, **self.streams)

    def prepare(self) -> PreparedLinen:
        return PreparedLinen(self)


def nnx_state(obj: Any) -> Any:
    """Something block_until_ready can wait on: a Linen variables dict as is, the
    state of an NNX model."""
    return nnx.state(obj) if isinstance(obj, nnx.Module) else obj


def _set_mode(model: nnx.Module, training: bool) -> None:
    model.train() if training else model.eval()


class PreparedLinen:
    """The three implementations of one case, initialised, one model per mode."""

    def __init__(self, case: LinenCase):
        self.case = case
        self.x = case.make_x()
        self.module = case.linen_module()
        self.keys = {"params": jax.random.key(0)}
        self.keys.update({s: jax.random.key(seed) for s, seed in case.streams.items()})
        self.dkey = jax.random.key(1)
        self.init_mode = next(iter(case.modes))
        self.variables = self.build("linen")()
        # Live NNX models, one per (impl, mode); the mode is set on the nnxgen model
        # (``.train()`` / ``.eval()``), passed by hand to ToNNX.
        self.models: dict[tuple[str, str], nnx.Module] = {}
        for impl in ("nnxgen", "tonnx"):
            for mode, training in case.modes.items():
                m = self.build(impl)()
                if impl == "nnxgen" and case.mode_arg is not None:
                    _set_mode(m, training)
                self.models[impl, mode] = m

    @property
    def impls(self) -> tuple[str, ...]:
        return IMPLS

    # -- init -----------------------------------------------------------------

    def init_fn(self, impl: str) -> Callable[[], Any]:
        """What init times: a fresh model and its state's leaves."""
        build = self.build(impl)
        return lambda: jax.tree.leaves(nnx_state(build()))

    def build(self, impl: str) -> Callable[[], Any]:
        c = self.case
        kw = c.mode_kwargs(self.init_mode)
        x = self.x
        if impl == "linen":
            module, keys = self.module, self.keys
            return lambda: module.init(keys, x, **kw)
        if impl == "nnxgen":

            def init_nnxgen():
                m = c.wrapper_cls(*c.args, **c.kwargs, rngs=c.rngs())
                if c.mode_arg is not None:
                    _set_mode(m, c.modes[self.init_mode])
                return bridge.lazy_init(m, x)

            return init_nnxgen

        def init_tonnx():
            return bridge.ToNNX(c.linen_module(), rngs=c.rngs()).lazy_init(x, **kw)

        return init_tonnx

    # -- calls ----------------------------------------------------------------

    def _call_kwargs(self, impl: str, mode: str) -> dict[str, Any]:
        """What an NNX-side call passes: nothing for nnxgen (the mode is on the
        model), the mode argument and ``mutable`` (training) for ToNNX."""
        if impl == "nnxgen":
            return {}
        kw: dict[str, Any] = dict(self.case.mode_kwargs(mode))
        if self.case.modes[mode] and self.case.train_mutable:
            kw["mutable"] = list(self.case.train_mutable)
        return kw

    def _needs_key(self, mode: str) -> bool:
        return self.case.modes[mode] and "dropout" in self.case.streams

    def fn(self, impl: str, mode: str) -> tuple[Callable[..., Any], tuple]:
        """A FRESH pure function (jit caches never hit) and its arguments."""
        training = self.case.modes[mode]
        if impl == "linen":
            module, kw = self.module, self.case.mode_kwargs(mode)
            mutable = list(self.case.train_mutable)
            if not training:

                def f(v, x):
                    return module.apply(v, x, **kw)

                return f, (self.variables, self.x)
            if self._needs_key(mode):

                def f(v, x, k):
                    return module.apply(
                        v, x, **kw, rngs={"dropout": k}, mutable=mutable
                    )

                return f, (self.variables, self.x, self.dkey)

            def f(v, x):
                return module.apply(v, x, **kw, mutable=mutable)

            return f, (self.variables, self.x)
        # NNX: split once outside, merge inside; training returns the state that
        # changed (batch stats, rng counters), the analogue of ``mutable=``.
        graphdef, state = nnx.split(self.models[impl, mode])
        kw = self._call_kwargs(impl, mode)
        if not training:

            def f(state, x):
                return nnx.merge(graphdef, state)(x, **kw)
        else:

            def f(state, x):
                m = nnx.merge(graphdef, state)
                y = m(x, **kw)
                return y, nnx.state(m, nnx.Not(nnx.Param))

        return f, (state, self.x)

    def eager(self, impl: str, mode: str) -> Callable[[], Any]:
        if impl == "linen":
            f, args = self.fn(impl, mode)
            return lambda: f(*args)
        m, kw, x = self.models[impl, mode], self._call_kwargs(impl, mode), self.x
        return lambda: m(x, **kw)

    def nnx_jit(self, impl: str, mode: str) -> Callable[[], Any]:
        """``nnx.jit`` of the live model's call (Linen: ``jax.jit`` of apply)."""
        if impl == "linen":
            f, args = self.fn(impl, mode)
            jf = jax.jit(f)
            return lambda: jf(*args)
        m, kw, x = self.models[impl, mode], self._call_kwargs(impl, mode), self.x

        @nnx.jit
        def call(m, x):
            return m(x, **kw)

        return lambda: call(m, x)


# ---------------------------------------------------------------------------
# The table.


def _normal(shape: tuple[int, ...]) -> Callable[[], jax.Array]:
    return lambda: jax.random.normal(jax.random.key(42), shape, jnp.float32)


def make_cases(tmpdir: str) -> list[LinenCase]:

    deep_linen, deep_nnx = setup_linen_deep_mlp(tmpdir)
    train_eval = {"eval": False, "train": True}
    return [
        LinenCase(
            "mlp",
            "MLP BN+Dropout",
            linen_mlp.MLP,
            linen_mlp_nnx.MLP,
            (512, 128),
            {"dropout_rate": 0.1, "momentum": 0.9},
            _normal((64, 128)),
            mode_arg="train",
            modes=train_eval,
            streams={"dropout": 1},
        ),
        LinenCase(
            "encoder",
            "Encoder (attention)",
            linen_encoder.Encoder,
            linen_encoder_nnx.Encoder,
            (512,),
            {"d": 128, "heads": 4, "dropout_rate": 0.1},
            lambda: jax.random.randint(jax.random.key(42), (8, 64), 0, 512),
            mode_arg="deterministic",
            modes={"eval": False},
            streams={"dropout": 1},
            # Its logically partitioned kernel cannot become an NNX variable under
            # flax's default eager sharding without a mesh (ToNNX fails the same
            # way, in flax's converter): convert it as metadata only.
            context=lambda: nnx.use_eager_sharding(False),
        ),
        LinenCase(
            "cnn",
            "CNN Conv+BN",
            linen_cnn.CNN,
            linen_cnn_nnx.CNN,
            (),
            {"features": 32, "classes": 10},
            _normal((16, 32, 32, 3)),
            mode_arg="use_running_average",
            modes=train_eval,
        ),
        LinenCase(
            "deep",
            "8-layer Dense w256",
            deep_linen,
            deep_nnx,
            (),
            {"width": 256, "depth": 8},
            _normal((64, 256)),
        ),
    ]
