"""Rng streams by annotation and by name (issue 21, items 6 and 7).

* A method parameter ``rngs`` annotated as a PRNG key (``rngs: jax.Array``, as a
  ConvNeXt's stochastic depth takes it) gets a key, ``make_rng("dropout")``,
  not an ``nnx.Rngs``; an ``nnx.Rngs``-annotated or unannotated one is unchanged.
* Streams of any name (``rngs.augment()``, ``self.rngs.droppath()``,
  ``rngs['split']``) and ``'x' in rngs`` tests work as with ``nnx.Rngs(0)``: at
  init every stream is derived from the params key, at apply each is Linen's
  stream of that name (an error naming it in training when it is not passed),
  and ``to_nnx`` serves them too.

References are pure NNX modules from ``tests/fixtures/rngpkg/models.py``, built
with keys computed here (a Linen probe for ``make_rng``, ``fold_in(params_key,
crc32(name))`` for derived streams, as README documents) -- not by nnxgen.
"""

from __future__ import annotations

import inspect
import typing
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nnxgen import runtime as rt
from nnxgen.to_linen.inspect import is_key_annotation
from tests.fixtures.rngpkg import models as M
from tests.test_numerics import linen_fold_data, probe_keys

KEY = jax.random.key(0)
DIM = 4


@pytest.fixture(scope="module")
def W(wrap):
    return wrap("tests.fixtures.rngpkg.models")


def _x(*shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def first(tag: str, key: jax.Array) -> jax.Array:
    """Linen's first top-level ``make_rng(tag)`` under ``rngs={tag: key}``."""
    return probe_keys({tag: key}, {tag: 1})[tag][0]


def derived(name: str, base: jax.Array) -> jax.Array:
    """The key of a stream nobody passed: ``fold_in(base, crc32(name))``."""
    return jax.random.fold_in(base, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def linen_stream(tag: str, key: jax.Array) -> nnx.RngStream:
    """An ``RngStream`` whose first draw is Linen's first ``make_rng(tag)``."""
    stream = nnx.RngStream(key, tag=tag)
    stream.count.set_value(jnp.uint32(linen_fold_data(1)))
    probe = nnx.RngStream(key, tag=tag)
    probe.count.set_value(jnp.uint32(linen_fold_data(1)))
    assert same_key(probe(), first(tag, key))
    return stream


def same_key(a: jax.Array, b: jax.Array) -> bool:
    return bool(jnp.array_equal(jax.random.key_data(a), jax.random.key_data(b)))


def params_of(module: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def assert_tree_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


def loaded(cls, variables, **rngs) -> nnx.Module:
    """A pure NNX ``cls`` holding the wrapper's ``variables``."""
    module = cls(DIM, rngs=nnx.Rngs(params=jax.random.key(99), **rngs))
    nnx.update(module, dict(variables["params"]))
    return module


# ---------------------------------------------------------------------------
# Item 6: a method parameter ``rngs`` that is a key.


def test_generated_spec_records_key_methods(W):
    spec = W.ConvNeXtBlock.__nnxgen__
    assert spec.key_rngs_methods == {"__call__"} and "__call__" in spec.rngs_methods
    assert W.OptionalKey.__nnxgen__.key_rngs_methods == {"__call__"}
    assert W.RngsMethod.__nnxgen__.key_rngs_methods == frozenset()
    assert W.RngsMethod.__nnxgen__.rngs_methods == {"__call__"}
    # the wrapper does not expose the key: it comes from the Linen stream
    assert "rngs" not in inspect.signature(W.ConvNeXtBlock.__call__).parameters
    import sys
    from pathlib import Path

    text = Path(sys.modules[W.__name__].__file__).read_text(encoding="utf-8")
    assert text.count("key_rngs_methods=") == 2


@pytest.mark.parametrize(
    ("annotation", "is_key"),
    [
        (inspect.Parameter.empty, False),
        (typing.Any, False),
        (nnx.Rngs, False),
        (nnx.Rngs | None, False),
        (typing.Optional[nnx.Rngs], False),  # noqa: UP045
        ("nnx.Rngs", False),
        ("nnx.Rngs | None", False),
        ("MyRngs", False),
        (nnx.Rngs | jax.Array, False),
        (jax.Array, True),
        (jax.Array | None, True),
        (jax.typing.ArrayLike, True),
        ("jax.Array", True),
        ("PRNGKey", True),
        ("PRNGKeyArray", True),
        ('Key[Array, ""]', True),
        ("jax.Array | None", True),
        (typing.Annotated[jax.Array, "key"], True),
    ],
)
def test_key_annotation(annotation, is_key):
    assert is_key_annotation(annotation) is is_key


def test_key_method_init_matches_nnx(W):
    x = _x(2, 5, 5, DIM)
    w = W.ConvNeXtBlock(DIM)
    variables = w.init(KEY, x, train=True)  # one key: the method's key is derived
    ref = M.ConvNeXtBlock(DIM, rngs=nnx.Rngs(params=first("params", KEY)))
    assert_tree_equal(dict(variables["params"]), params_of(ref))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_key_method_train_matches_nnx(W, jit):
    x, k = _x(8, 5, 5, DIM), jax.random.key(7)
    w = W.ConvNeXtBlock(DIM, drop_path=0.5)
    variables = w.init(KEY, x, train=False)

    def apply(v, x, k):
        return w.apply(v, x, train=True, rngs={"dropout": k})

    out = (jax.jit(apply) if jit else apply)(variables, x, k)
    ref = loaded(M.ConvNeXtBlock, variables)
    want = ref(x, rngs=first("dropout", k), train=True)
    assert_tree_equal(out, want)
    # stochastic depth did drop some samples, and the key matters
    assert not np.allclose(out, ref(x, rngs=KEY, train=False))
    other = apply(variables, x, jax.random.key(8))
    assert not np.allclose(out, other)


def test_key_method_train_without_stream_raises(W):
    x = _x(2, 5, 5, DIM)
    w = W.ConvNeXtBlock(DIM)
    variables = w.init(KEY, x, train=False)
    with pytest.raises(
        rt.NnxgenError,
        match=r"ConvNeXtBlock\.__call__.*'dropout'.*"
        r"rngs=\{'dropout': key\}",
    ):
        w.apply(variables, x, train=True)


def test_key_method_eval(W):
    """Eval: a required key is still given (a fixed one, as pure NNX needs one);
    the module decides not to use it."""
    x = _x(2, 5, 5, DIM)
    w = W.ConvNeXtBlock(DIM)
    variables = w.init(KEY, x, train=False)
    out = w.apply(variables, x, train=False)
    ref = loaded(M.ConvNeXtBlock, variables)
    assert_tree_equal(out, ref(x, rngs=jax.random.key(123), train=False))
    assert_tree_equal(w.apply(variables, x, train=False, rngs={"dropout": KEY}), out)


def test_optional_key_passed_only_with_stream(W):
    x, k = _x(8, DIM), jax.random.key(5)
    w = W.OptionalKey(DIM)
    variables = w.init(KEY, x)
    ref = loaded(M.OptionalKey, variables)
    assert_tree_equal(w.apply(variables, x), ref(x))  # no stream: left out
    assert_tree_equal(w.apply(variables, x, train=True), ref(x))
    out = w.apply(variables, x, rngs={"dropout": k})
    assert_tree_equal(out, ref(x, rngs=first("dropout", k)))
    assert not np.allclose(out, ref(x))


def test_rngs_annotated_method_unchanged(W):
    x, k = _x(8, DIM), jax.random.key(5)
    w = W.RngsMethod(DIM)
    variables = w.init(KEY, x)
    out = w.apply(variables, x, train=True, rngs={"dropout": k})
    ref = loaded(M.RngsMethod, variables)
    # a method's nnx.Rngs holds one make_rng key per Linen stream (as before)
    want = ref(x, rngs=nnx.Rngs(dropout=first("dropout", k)))
    assert_tree_equal(out, want)
    with pytest.raises(rt.NnxgenError, match="'dropout'"):
        w.apply(variables, x, train=True)


# ---------------------------------------------------------------------------
# Item 7: streams by any name.


def test_stream_drawn_at_init_derived_from_params_key(W):
    x = _x(2, DIM)
    variables = W.AugmentAtInit(DIM).init(KEY, x)
    p = first("params", KEY)
    ref = M.AugmentAtInit(DIM, rngs=nnx.Rngs(params=p, augment=derived("augment", p)))
    assert_tree_equal(dict(variables["params"]), params_of(ref))


def test_default_stream_present_at_init(W):
    """``'split' in rngs or 'default' in rngs``: as with nnx.Rngs(0), ``default``."""
    x = _x(2, DIM)
    variables = W.SplitNoise(DIM).init(KEY, x)
    p = first("params", KEY)
    ref = M.SplitNoise(DIM, rngs=nnx.Rngs(params=p, default=derived("default", p)))
    assert_tree_equal(dict(variables["params"]), params_of(ref))
    # every key given to init: same layout, and 'split' still is not present
    keys = {"params": KEY, "split": jax.random.key(3)}
    again = W.SplitNoise(DIM).init(keys, x)
    assert jax.tree.map(jnp.shape, again) == jax.tree.map(jnp.shape, variables)
    assert_tree_equal(again, variables)


def test_membership(W):
    x = _x(2, DIM)
    M.SEEN.clear()
    w = W.Membership(DIM)
    variables = w.init({"params": KEY, "dropout": KEY}, x)
    ctor = {"params": True, "default": True, "dropout": False, "augment": False}
    assert M.SEEN[0] == ("init", ctor)
    assert nnx.Rngs(0).__contains__("default") and "dropout" not in nnx.Rngs(0)
    M.SEEN.clear()
    w.apply(variables, x, rngs={"dropout": KEY})
    call = {"params": False, "default": False, "dropout": True, "augment": False}
    assert M.SEEN[-1] == ("call", call)
    M.SEEN.clear()
    w.apply(variables, x)
    assert M.SEEN[-1] == ("call", dict.fromkeys(call, False))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    ("name", "tag", "train"),
    [("Augment", "augment", None), ("KeptDropPath", "droppath", True)],
)
def test_kept_rngs_named_stream_matches_nnx(W, name, tag, train, jit):
    x, k = _x(8, DIM), jax.random.key(11)
    w = getattr(W, name)(DIM)
    kw = {} if train is None else {"train": train}
    variables = w.init(KEY, x, **kw)

    def apply(v, x, k):
        return w.apply(v, x, train=True, rngs={tag: k})

    out = (jax.jit(apply) if jit else apply)(variables, x, k)
    ref = loaded(getattr(M, name), variables)
    setattr(ref.rngs, tag, linen_stream(tag, k))
    assert_tree_equal(out, ref(x, **kw))


@pytest.mark.parametrize(
    ("name", "tag", "kw"),
    [
        ("Augment", "augment", {}),
        ("KeptDropPath", "droppath", {"train": True}),
        ("DefaultOrDropout", "default", {"train": True}),
    ],
)
def test_train_without_stream_raises_naming_it(W, name, tag, kw):
    x = _x(2, DIM)
    w = getattr(W, name)(DIM)
    variables = w.init(KEY, x, **kw)
    with pytest.raises(
        rt.NnxgenError, match=rf"{name}: .*'{tag}'.*rngs=\{{'{tag}': key\}}"
    ):
        w.apply(variables, x, **{**kw, "train": True}, rngs={"unrelated": KEY})


def test_default_or_dropout_follows_init_choice(W):
    """The constructor found ``default`` (as with nnx.Rngs(0)); its stored fork
    is Linen's ``default`` stream at apply."""
    x, k = _x(8, DIM), jax.random.key(13)
    w = W.DefaultOrDropout(DIM)
    variables = w.init(KEY, x, train=False)
    p = first("params", KEY)
    ref = M.DefaultOrDropout(
        DIM, rngs=nnx.Rngs(params=p, default=derived("default", p))
    )
    assert_tree_equal(dict(variables["params"]), params_of(ref))
    out = w.apply(variables, x, train=True, rngs={"default": k})
    ref.stream = linen_stream("default", k)
    assert_tree_equal(out, ref(x, train=True))
    # eval: no stream needed
    assert_tree_equal(w.apply(variables, x, train=False), ref(x, train=False))


def test_eval_draws_fixed_key(W):
    """Outside training a stream nobody passed gets ``fold_in(key(0), crc32(name))``."""
    x = _x(4, DIM)
    w = W.Augment(DIM)
    variables = w.init(KEY, x)
    out = w.apply(variables, x, train=False)
    ref = loaded(M.Augment, variables)
    ref.rngs = nnx.Rngs(augment=derived("augment", jax.random.key(0)))
    assert_tree_equal(out, ref(x))


@pytest.mark.parametrize("name", ["Augment", "KeptDropPath", "DefaultOrDropout"])
def test_to_nnx_serves_named_streams(W, name):
    x, k = _x(4, DIM), jax.random.key(17)
    w = getattr(W, name)(DIM)
    kw = {} if name == "Augment" else {"train": True}
    variables = w.init(KEY, x, **kw)
    tag = {"Augment": "augment", "KeptDropPath": "droppath"}.get(name, "default")
    # with the stream: the module draws what apply draws
    m = rt.to_nnx(w, variables, train=True, rngs={tag: k})
    assert_tree_equal(m(x, **kw), w.apply(variables, x, train=True, rngs={tag: k}))
    # without it, outside training: the fixed key apply uses
    m = rt.to_nnx(w, variables, train=False)
    assert_tree_equal(
        m(x, **{k_: False for k_ in kw}), w.apply(variables, x, train=False)
    )
    if name == "Augment":  # no mode attribute: to_nnx's train=None keeps eval's keys
        assert_tree_equal(rt.to_nnx(w, variables)(x), w.apply(variables, x))
    # in training without it: the error names the stream and to_nnx
    m = rt.to_nnx(w, variables, train=True)
    with pytest.raises(rt.NnxgenError, match=rf"'{tag}'.*to_nnx\(\.\.\., rngs="):
        m(x, **kw)


def test_to_nnx_key_method(W):
    x = _x(2, 5, 5, DIM)
    w = W.ConvNeXtBlock(DIM)
    variables = w.init(KEY, x, train=False)
    m = rt.to_nnx(w, variables, train=True)
    k = jax.random.key(3)
    assert_tree_equal(
        m(x, rngs=first("dropout", k), train=True),
        w.apply(variables, x, train=True, rngs={"dropout": k}),
    )
