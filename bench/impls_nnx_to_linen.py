"""NNX → Linen: how pure NNX, the generated wrapper and ``to_linen`` build and run a case.

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

**Linen's floor** (``Prepared.floor_init`` / ``floor_eager``): what the wrapper
costs as a Linen module before it runs anything -- :func:`linen_floor`, the wrapper
class (same fields) whose methods only store its variables (init: one
``make_rng('params')`` and a ``put_variable`` per collection entry) or return their
input (apply, given the wrapper's variables, mode, rngs and ``mutable``). No Linen
wrapper can be cheaper; the verdicts print how much of the wrapper's ratio it is.

An implementation that cannot run a case is left out of ``Prepared.impls`` and its
reason is in ``Case.missing`` (the table shows ``—``). The implementations:

* ``nnx``:    pure NNX. ``graphdef, state = nnx.split(module)`` once (the module in
              ``.eval()`` / ``.train()``); the function is ``nnx.merge(graphdef,
              state)(x)``; in train mode it also returns the updated non-``Param``
              state (batch stats and rng counters), the NNX analogue of
              ``mutable=['batch_stats']``. Decode step: the module after
              ``init_cache``; returns ``nnx.state(m, nnx.Cache)`` too.
* ``nnxgen``: the generated wrapper; ``model.apply(v, x, train=...)`` (train mode:
              ``rngs={'dropout': k}, mutable=['batch_stats']``).
* ``bridge``: ``flax.nnx.bridge.to_linen(NnxClass, *args)``; init with
              ``{'params', 'dropout'}`` keys; the mode is set by an ``nnx_method``
              that calls ``.eval()`` / ``.train()`` before ``__call__`` (the bridge
              rebuilds the module in its default mode on every apply).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx
from flax.nnx import bridge

IMPLS = ("nnx", "nnxgen", "bridge")

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
    #: the context the whole case runs in (none here; see cases_linen_to_nnx)
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

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


def _floor_method(self: nn.Module, x: Any, *args: Any, **kwargs: Any) -> Any:
    """What every Linen module's init/apply does without running anything: init
    draws ``make_rng('params')`` and stores the variables; apply returns its input."""
    if self.is_initializing():
        self.make_rng("params")
        for col, tree in type(self).FLOOR_STORE.items():
            for k, v in tree.items():
                self.put_variable(col, k, v)
    return x


def linen_floor(case: Case, variables: dict[str, Any]) -> nn.Module:
    """Linen's floor for ``case``: its generated wrapper class with the runtime's
    work taken out. A subclass with the same fields (Linen clones and freezes
    them on every init and apply) whose methods only do :func:`_floor_method`;
    the variables to store are a class attribute (not a field)."""
    methods = {"__call__": _floor_method, "init_cache": _floor_method}
    cls = type(
        f"{case.wrapper_cls.__name__}Floor",
        (case.wrapper_cls,),
        {"FLOOR_STORE": variables, **methods},
    )
    return cls(*case.args, **case.kwargs)


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

    def eager(self, impl: str, mode: str) -> Callable[[], Any]:
        """The un-jitted call: ``fn`` applied to its arguments."""
        f, args = self.fn(impl, mode)
        return functools.partial(f, *args)

    def floor_init(self) -> Callable[[], Any] | None:
        """Linen's floor of the wrapper's init (see the module docstring)."""
        return None

    def floor_eager(self, mode: str) -> Callable[[], Any] | None:
        """Linen's floor of the wrapper's eager apply in ``mode``."""
        return None


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
        self.floor = linen_floor(case, self.w_vars)

    def floor_init(self) -> Callable[[], Any]:
        return lambda: self.floor.init(self.key, self.x, train=False)

    def floor_eager(self, mode: str) -> Callable[[], Any]:
        if mode == "eval":
            return lambda: self.floor.apply(self.w_vars, self.x, train=False)
        return lambda: self.floor.apply(
            self.w_vars,
            self.x,
            train=True,
            rngs={"dropout": self.dkey},
            mutable=self.train_mutable,
        )

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


class DecodeImpls(Prepared):
    case: DecodeCase

    def __init__(self, case: DecodeCase):
        self.case = case
        self.x = case.x()
        self.key = jax.random.key(0)
        self.wrapper = case.wrapper_cls(*case.args, **case.kwargs)
        self.nnx_split = {"step": nnx.split(case.construct())}
        self.w_vars = self.init_fn("nnxgen")()
        self.floor = linen_floor(case, self.w_vars)

    def floor_init(self) -> Callable[[], Any]:
        c = self.case
        return lambda: self.floor.init(self.key, c.batch, c.length)

    def floor_eager(self, mode: str) -> Callable[[], Any]:
        return lambda: self.floor.apply(
            self.w_vars, self.x, train=False, mutable=["cache"]
        )

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
