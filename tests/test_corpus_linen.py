"""Linen -> NNX on a real third-party Linen model: nano-moe-jax's ``NanoMoE``.

``nano_moe`` (PyPI ``nano-moe-jax``) is a small Mixture-of-Experts language
model written in Flax Linen: ``NanoMoE`` (embeddings -> ``TransformerBlock`` s
-> head, returning ``(logits, aux_loss)``), built from ``MultiHeadAttention``,
``MoELayer``, ``Router`` and ``ExpertFFN``; every layer but ``Router`` and
``ExpertFFN`` takes a frozen-dataclass ``config: NanoMoEConfig`` and a
``deterministic: bool = True`` call argument (dropout), and ``NanoMoE`` has a
``generate`` sampling method. All six classes are wrapped into one file
(``generate.generate([...], "nano_moe_nnx.py")``), with a tiny config, and:

- every Linen class of the package wraps; the file passes ``ruff format
  --check`` and ``ruff check`` (the copied ``typing.Tuple`` annotations and
  their import get exactly ``# ruff: noqa: UP006, UP035``) and is byte-identical when
  generated twice; ``__init__`` takes the Linen fields as
  annotated in the source (``config: NanoMoEConfig``) + ``*, rngs``;
  ``__call__`` and ``generate`` mirror the source signatures, ``deterministic``
  becoming ``bool | None = None`` (it follows ``.train()`` / ``.eval()``);
- the layout is ``nnx.bridge.ToNNX(...).lazy_init(x)``'s (paths, variable
  types and values for the same seed), whether made by ``lazy_init`` or by the
  first call;
- numbers equal ``NanoMoE(cfg).apply`` on the same variables in eval (no mode:
  the Linen default ``deterministic=True``; ``.eval()``; an explicit argument
  over the mode) and in train (dropout keys reproduced from the wrapper's
  streams, and equal to ``ToNNX`` with the same ``nnx.Rngs``, call after call);
- a short ``nnx.Optimizer`` + ``optax.adamw`` loop under ``nnx.jit`` (loss =
  cross-entropy + ``aux_loss_coeff * aux_loss``, as ``nano_moe.train``) lowers
  the loss, equals the same loop on ``ToNNX``, and the trained parameters give
  the same logits through plain Linen ``NanoMoE(cfg).apply``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from tests.helpers import ROOT, ruff
from tests.linen_helpers import (
    assert_equal,
    assert_same_state,
    draw,
    flat_state,
    linen_vars,
)

PKG = "nano_moe"
#: Every Linen class of nano_moe, as "module:Class" targets.
TARGETS = [
    "nano_moe.model:NanoMoE",
    "nano_moe.layers:TransformerBlock",
    "nano_moe.layers:MoELayer",
    "nano_moe.layers:MultiHeadAttention",
    "nano_moe.layers:Router",
    "nano_moe.layers:ExpertFFN",
]
OUT = "nano_moe_nnx.py"
CONFIG_LAYERS = ["NanoMoE", "TransformerBlock", "MoELayer", "MultiHeadAttention"]

X = jax.random.randint(jax.random.key(1), (2, 8), 0, 32)  # (batch, block_size) tokens
H = jax.random.normal(jax.random.key(2), (2, 8, 16))  # (batch, seq, d_model) features

#: The wrappers' seeds: one ``default`` stream (it serves ``params``; Linen's
#: dropout falls back to it), or separate ``params`` and ``dropout`` streams.
SEEDS = {
    "default": lambda: nnx.Rngs(0),
    "params+dropout": lambda: nnx.Rngs(params=0, dropout=1),
}


pytestmark = pytest.mark.slow  # third-party Linen corpus


def _cfg():
    from nano_moe import NanoMoEConfig

    return NanoMoEConfig(
        vocab_size=32, n_layers=1, n_heads=2, d_model=16, d_ff=32,
        n_experts=2, top_k=1, block_size=8,
    )  # fmt: skip


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """(the generated text, a second generation's text, its directory, the module)."""
    try:
        importlib.import_module(PKG)
    except ImportError as err:
        pytest.skip(f"nano-moe-jax ({PKG}) cannot be imported here: {err}")
    from nnxgen import generate

    text = generate.generate(TARGETS, OUT)
    again = generate.generate(TARGETS, OUT)
    d = tmp_path_factory.mktemp("corpus_linen")
    (d / OUT).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(d))
    importlib.invalidate_caches()
    mod = importlib.import_module(OUT[:-3])
    yield text, again, d, mod
    sys.path.remove(str(d))
    sys.modules.pop(OUT[:-3], None)


def _linen(name: str) -> type:
    target = next(t for t in TARGETS if t.endswith(":" + name))
    mod, _, cls = target.partition(":")
    return getattr(importlib.import_module(mod), cls)


@pytest.fixture(scope="module", params=list(SEEDS))
def built(request, gen):
    """(seed name, a lazily initialized wrapper, ToNNX with the same seed)."""
    mod = gen[3]
    cfg = _cfg()
    model = mod.NanoMoE(cfg, rngs=SEEDS[request.param]())
    nnx.bridge.lazy_init(model, X)
    ref = nnx.bridge.ToNNX(_linen("NanoMoE")(cfg), rngs=SEEDS[request.param]())
    ref.lazy_init(X)
    return request.param, model, ref


# ---------------------------------------------------------------------------
# Generation.


def test_every_linen_class_wraps(gen):
    *_, mod = gen
    root = importlib.import_module(PKG)
    found = set()
    for info in pkgutil.walk_packages(root.__path__, PKG + "."):
        m = importlib.import_module(info.name)
        found |= {
            f"{c.__module__}:{c.__qualname__}"
            for c in vars(m).values()
            if isinstance(c, type)
            and issubclass(c, nn.Module)
            and c.__module__ == m.__name__
        }
    assert found == set(TARGETS)
    cfg = _cfg()
    for target in TARGETS:
        name = target.partition(":")[2]
        wrapper = getattr(mod, name)
        assert issubclass(wrapper, nnx.Module) and wrapper.__module__ == mod.__name__
        if name in CONFIG_LAYERS:
            obj = wrapper(cfg, rngs=nnx.Rngs(0))
            expected = _linen(name)(config=cfg)
        elif name == "Router":
            obj = wrapper(2, 1, rngs=nnx.Rngs(0))
            expected = _linen(name)(n_experts=2, top_k=1)
        else:
            obj = wrapper(32, 16, rngs=nnx.Rngs(0))
            expected = _linen(name)(d_ff=32, d_model=16)
        assert obj.to_nnx__module == expected
        assert linen_vars(obj) == {}  # nothing until the first call or lazy_init


def test_ruff_check(gen):
    _, _, d, _ = gen
    lint = ruff("check", "--isolated", "--no-cache", str(d / OUT), cwd=ROOT)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_ruff_format_and_the_noqa_line(gen):
    text, _, d, _ = gen
    fmt = ruff("format", "--isolated", "--check", "--no-cache", str(d / OUT), cwd=ROOT)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    # the source's ``-> Tuple[...]`` is copied as written: exactly the two codes it
    # triggers are silenced (a code too many would be RUF100 in test_ruff_check)
    assert "\n# ruff: noqa: UP006, UP035\n" in text
    assert "\nfrom typing import Any, Tuple\n" in text


def test_generation_is_deterministic(gen):
    text, again, d, _ = gen
    assert again.encode() == text.encode()
    assert (d / OUT).read_bytes() == text.encode()


def _defs(text: str) -> dict[str, dict[str, ast.FunctionDef]]:
    """{class: {method: its def}} of the classes in ``text``."""
    tree = ast.parse(text)
    return {
        c.name: {f.name: f for f in c.body if isinstance(f, ast.FunctionDef)}
        for c in tree.body
        if isinstance(c, ast.ClassDef)
    }


def _sig_text(fn: ast.FunctionDef, text: str) -> str:
    """``(a: A, b: B = d, *, c: C) -> R``: annotations and defaults as ``text`` has them."""

    def seg(node: ast.expr) -> str:
        got = ast.get_source_segment(text, node)
        assert got is not None
        return " ".join(got.split())

    def one(arg: ast.arg, default: ast.expr | None) -> str:
        out = arg.arg if arg.annotation is None else f"{arg.arg}: {seg(arg.annotation)}"
        if default is not None:
            out += (
                f" = {seg(default)}"
                if arg.annotation is not None
                else f"={seg(default)}"
            )
        return out

    a = fn.args
    assert not a.posonlyargs and a.vararg is None and a.kwarg is None
    positional = a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    parts = [one(p, d) for p, d in zip(positional, defaults)]
    if a.kwonlyargs:
        parts.append("*")
        parts += [one(p, d) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    ret = f" -> {seg(fn.returns)}" if fn.returns is not None else ""
    return f"({', '.join(parts)}){ret}"


def _source_def(cls: type, name: str) -> tuple[ast.FunctionDef, str]:
    """The def of ``cls.name`` in its module's source, and that source."""
    text = inspect.getsource(sys.modules[cls.__module__])
    tree = ast.parse(text)
    for c in tree.body:
        if isinstance(c, ast.ClassDef) and c.name == cls.__name__:
            fn = next(
                f for f in c.body if isinstance(f, ast.FunctionDef) and f.name == name
            )
            return fn, text
    raise AssertionError(cls)


def _source_fields(cls: type) -> list[str]:
    tree = ast.parse(inspect.getsource(sys.modules[cls.__module__]))
    c = next(
        c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == cls.__name__
    )
    return [ast.unparse(s) for s in c.body if isinstance(s, ast.AnnAssign)]


def test_init_signatures(gen):
    from nano_moe import NanoMoEConfig

    text, *_, mod = gen
    defs = _defs(text)
    assert "from nano_moe.config import NanoMoEConfig" in text.splitlines()
    for name in CONFIG_LAYERS:
        assert _sig_text(defs[name]["__init__"], text) == (
            "(self, config: NanoMoEConfig, *, rngs: nnx.Rngs) -> None"
        ), name
        hints = typing.get_type_hints(getattr(mod, name).__init__)
        assert hints["config"] is NanoMoEConfig
        assert hints["rngs"] is nnx.Rngs
    assert _sig_text(defs["Router"]["__init__"], text) == (
        "(self, n_experts: int, top_k: int, *, rngs: nnx.Rngs) -> None"
    )
    assert _sig_text(defs["ExpertFFN"]["__init__"], text) == (
        "(self, d_ff: int, d_model: int, *, rngs: nnx.Rngs) -> None"
    )
    for target in TARGETS:  # the Linen fields as annotated in the source, in order
        name = target.partition(":")[2]
        args = defs[name]["__init__"].args
        assert [ast.unparse(a) for a in args.args[1:]] == _source_fields(_linen(name))
        assert [a.arg for a in args.kwonlyargs] == ["rngs"]


def test_call_signatures_mirror_source(gen):
    text, *_, mod = gen
    defs = _defs(text)
    pair = "Tuple[jnp.ndarray, jnp.ndarray]"
    expected = {
        "NanoMoE": f"(self, x: jnp.ndarray, deterministic: bool | None = None) -> {pair}",
        "TransformerBlock": (
            f"(self, x: jnp.ndarray, deterministic: bool | None = None) -> {pair}"
        ),
        "MoELayer": f"(self, x: jnp.ndarray, deterministic: bool | None = None) -> {pair}",
        "MultiHeadAttention": (
            "(self, x: jnp.ndarray, deterministic: bool | None = None) -> jnp.ndarray"
        ),
        "Router": "(self, x: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]",
        "ExpertFFN": "(self, x: jnp.ndarray) -> jnp.ndarray",
    }
    for name, sig in expected.items():
        fn = defs[name]["__call__"]
        assert _sig_text(fn, text) == sig, name
        # the same text as the Linen source, but for the mode argument
        mirrored = _sig_text(*_source_def(_linen(name), "__call__")).replace(
            "deterministic: bool = True", "deterministic: bool | None = None"
        )
        assert _sig_text(fn, text) == mirrored, name
        # the annotations resolve to the Linen method's
        hints = typing.get_type_hints(getattr(mod, name).__call__)
        linen_hints = typing.get_type_hints(_linen(name).__call__)
        if "deterministic" in linen_hints:
            assert hints.pop("deterministic") == (bool | None)
            linen_hints.pop("deterministic")
        assert hints == linen_hints, name
    # the layers with a mode argument follow .train()/.eval()/nnx.view
    for name in CONFIG_LAYERS:
        assert set(defs[name]) >= {"set_view"}
    assert set(defs["Router"]) == set(defs["ExpertFFN"]) == {"__init__", "__call__"}
    assert set(defs["NanoMoE"]) == {"__init__", "__call__", "generate", "set_view"}


def test_generate_signature_mirrored(gen):
    text, *_, mod = gen
    fn = _defs(text)["NanoMoE"]["generate"]
    assert _sig_text(fn, text) == (
        "(self, params: Any, rng: jax.Array, prompt: jnp.ndarray, "
        "max_new_tokens: int = 100, temperature: float = 0.8, "
        "top_k_sample: int = 40) -> jnp.ndarray"
    )
    ours = inspect.signature(mod.NanoMoE.generate).parameters
    theirs = inspect.signature(_linen("NanoMoE").generate).parameters
    assert list(ours) == list(theirs)
    for name, p in theirs.items():
        assert (ours[name].kind, ours[name].default) == (p.kind, p.default), name


# ---------------------------------------------------------------------------
# Layout and numbers.


def test_layout_equals_tonnx(built):
    seed, model, ref = built
    assert_same_state(model, ref)
    paths = {p for p in flat_state(model)}
    assert ("pos_emb",) in paths
    assert ("block_0", "MoELayer_0", "Router_0", "Dense_0", "kernel") in paths
    assert ("block_0", "MoELayer_0", "expert_1", "Dense_1", "bias") in paths
    streams = {p[1] for p in paths if p[0] == "to_nnx__rngs"}
    assert streams == ({"default"} if seed == "default" else {"params", "dropout"})
    # the first call (no lazy_init) makes the same variables
    first = type(model)(_cfg(), rngs=SEEDS[seed]())
    first(X)
    assert_same_state(first, ref)


@pytest.mark.parametrize("mode", ["no mode", "eval", "explicit over train"])
def test_eval_numbers_equal_linen(built, mode):
    _, model, _ = built
    model = nnx.clone(model)
    variables = linen_vars(model)
    linen = _linen("NanoMoE")(_cfg())
    expected = linen.apply(variables, X, deterministic=True)
    assert_equal(linen.apply(variables, X), expected)  # Linen's default
    if mode == "no mode":
        out = model(X)
    elif mode == "eval":
        model.eval()
        out = model(X)
    else:
        model.train()
        out = model(X, deterministic=True)
    logits, aux = out
    assert logits.shape == (2, 8, 32) and aux.shape == ()
    assert_equal(out, expected)


def test_train_numbers_equal_linen_and_tonnx(built):
    _, model, ref = built
    model, ref = nnx.clone(model), nnx.clone(ref)
    variables = linen_vars(model)
    linen = _linen("NanoMoE")(_cfg())
    eval_logits, _ = linen.apply(variables, X, deterministic=True)
    model.train()
    outs = []
    for _ in range(2):  # keys are drawn on every call
        keys = draw(nnx.clone(model.to_nnx__rngs))
        out = model(X)
        assert_equal(out, linen.apply(variables, X, deterministic=False, rngs=keys))
        assert_equal(out, ref(X, deterministic=False))
        outs.append(out)
    assert not np.array_equal(outs[0][0], eval_logits)  # dropout is on
    assert not np.array_equal(outs[0][0], outs[1][0])  # with new keys each call
    # an explicit deterministic=False wins over .eval()
    model.eval()
    keys = draw(nnx.clone(model.to_nnx__rngs))
    out = model(X, deterministic=False)
    assert_equal(out, linen.apply(variables, X, deterministic=False, rngs=keys))
    assert_equal(out, ref(X, deterministic=False))
    assert_same_state(model, ref)  # the same streams advanced the same way


@pytest.mark.parametrize("name", ["TransformerBlock", "MoELayer", "MultiHeadAttention"])
def test_layers_equal_linen_and_tonnx(gen, name):
    mod = gen[3]
    cfg = _cfg()
    model = getattr(mod, name)(cfg, rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(model, H)
    ref = nnx.bridge.ToNNX(_linen(name)(config=cfg), rngs=nnx.Rngs(0)).lazy_init(H)
    assert_same_state(model, ref)
    variables = linen_vars(model)
    model.eval()
    out = model(H)
    assert_equal(out, _linen(name)(config=cfg).apply(variables, H))
    assert_equal(out, ref(H))  # (every call draws keys: keep the streams in step)
    model.train()
    out = model(H)
    assert_equal(out, ref(H, deterministic=False))
    assert not np.array_equal(jax.tree.leaves(out)[0], jax.tree.leaves(ref(H))[0])


def test_router_and_expert_equal_linen(gen):
    mod = gen[3]
    for model, linen in [
        (mod.Router(2, 1, rngs=nnx.Rngs(0)), _linen("Router")(n_experts=2, top_k=1)),
        (
            mod.ExpertFFN(32, 16, rngs=nnx.Rngs(0)),
            _linen("ExpertFFN")(d_ff=32, d_model=16),
        ),
    ]:
        out = model(H)  # the first call creates the variables
        ref = nnx.bridge.ToNNX(linen, rngs=nnx.Rngs(0)).lazy_init(H)
        assert_same_state(model, ref)
        variables = linen_vars(model)
        assert_equal(out, linen.apply(variables, H))
        assert_equal(model(H), linen.apply(variables, H))


# ---------------------------------------------------------------------------
# Training.


def _train(model, *, explicit: bool, steps: int = 5):
    import optax

    coeff = _cfg().aux_loss_coeff
    targets = jnp.roll(X, -1, axis=1)
    opt = nnx.Optimizer(model, optax.adamw(1e-2, weight_decay=0.1), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(model):
            logits, aux = model(x, deterministic=False) if explicit else model(x)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return ce + coeff * aux

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    return [float(step(model, opt, X, targets)) for _ in range(steps)]


@pytest.mark.parametrize("built", ["params+dropout"], indirect=True)  # one: compiles
def test_training_loop_then_plain_linen(built):
    import optax

    _, model, ref = built
    model, ref = nnx.clone(model), nnx.clone(ref)
    linen = _linen("NanoMoE")(_cfg())
    targets = jnp.roll(X, -1, axis=1)

    def eval_loss(variables):
        logits, aux = linen.apply(variables, X)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
        return float(ce + _cfg().aux_loss_coeff * aux)

    before = linen_vars(model)
    model.train()
    losses = _train(model, explicit=False)
    assert losses[-1] < losses[0], losses
    # the same loop on ToNNX with the same seed: the same numbers
    ref_losses = _train(ref, explicit=True)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    # the trained parameters, in plain Linen
    after = linen_vars(model)
    assert set(after) == {"params"}
    assert_equal(after, {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))})
    assert jax.tree.structure(after) == jax.tree.structure(
        {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    )
    assert eval_loss(after) < eval_loss(before)
    assert not np.array_equal(
        after["params"]["Dense_0"]["kernel"], before["params"]["Dense_0"]["kernel"]
    )
    model.eval()
    assert_equal(model(X), linen.apply(after, X))
    np.testing.assert_allclose(
        np.asarray(linen.apply(after, X)[0]),
        np.asarray(linen.apply(linen_vars(ref), X)[0]),
        rtol=1e-5,
        atol=1e-6,
    )
