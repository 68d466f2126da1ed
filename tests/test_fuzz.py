"""Property-based fuzz test: random NNX module *source text* -> nnxgen -> Linen wrapper.

Each example writes a fresh, uniquely named module that defines one NNX class with
random constructor / ``__call__`` / extra-method signatures (every parameter kind,
awkward defaults and annotations, unicode names, nasty docstrings), generates its
wrapper and checks that

1. generation succeeds and the output compiles;
2. generating twice gives byte-identical text;
3. the generated module imports;
4. the wrapper's dataclass fields mirror the NNX constructor (minus ``rngs``, Linen
   names renamed), with defaults ``is``/``==`` the NNX defaults;
5. every wrapped method mirrors the NNX method's signature (minus ``rngs``, minus
   the added ``train``): names, kinds, defaults, annotations, return annotation,
   and its docstring.

``NNXGEN_FUZZ_EXAMPLES`` sets the number of examples (default ``FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import inspect
import itertools
import keyword
import os
import subprocess
import sys
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnxgen import generate
from nnxgen.codegen.layout import width
from tests.helpers import ROOT, tool

FUZZ_EXAMPLES = int(os.environ.get("NNXGEN_FUZZ_EXAMPLES", "300"))

_EMPTY = inspect.Parameter.empty
_counter = itertools.count()

# hypothesis fuzz of the generator, ruff/pyright per batch
pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------
# What every fuzzed module defines around the model class.

PRELUDE = """\
import dataclasses
import enum
import functools
from typing import Annotated, Any, Callable, Literal, Optional, Union

import jax
import jax.numpy as jnp
from flax import nnx
from jax import nn as jnn


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = 2


SCALE = 2
EPS = 1e-5
GREETING = "hallo wörld"


@dataclasses.dataclass(frozen=True)
class Cfg:
    width: int = 4
    gain: float = 1.0


def _make_param():
    return nnx.Param(jnp.zeros((2,)))


def _traced(fn):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        return fn(*args, **kwargs)

    return inner
"""

# Defined after the model class: reachable from its signatures only as a forward ref.
TRAILER = '''

class Later:
    """Defined after the model."""
'''

# ---------------------------------------------------------------------------
# Names.

CLASS_NAMES = ["Model", "Größe", "ΔNet", "Net_2", "Block"]
# Constructor parameters: plain, unicode, Linen-reserved (-> renamed), soft keywords.
INIT_NAMES = [
    "features", "dim", "größe", "λ_decay", "naïve", "dtype", "act", "momentum", "eps",
    "label", "cfg", "mode", "use_bias", "Δt", "日本", "x2", "train",
    "name", "parent", "scope", "variables", "init", "apply", "setup", "param", "bind",
    "clone", "path", "name_", "init_", "match", "type",
    "jnp", "SCALE", "Mode", "dataclasses", "_rt",
]  # fmt: skip
# Names the class body uses after a field: imports (`jnp`), module constants
# (`SCALE`, `Mode`) and nnxgen's own (`dataclasses`, `_rt`, renamed with `_`).
SHADOWING_INIT_NAMES = ["jnp", "SCALE", "Mode", "dataclasses", "_rt"]
METHOD_PARAM_NAMES = [
    "x", "y", "mask", "scale", "größe", "deterministic", "name", "init", "train", "π",
    "inputs", "bias", "type", "x_mask",
]  # fmt: skip
VAR_NAMES = ["args", "rest", "extras", "ärgs"]
VARKW_NAMES = ["kwargs", "options", "kw", "öpts"]
# Extra public methods: plain, unicode and Linen-reserved (-> wrapper method `name_`).
# None of them is an attribute of nnx.Module (overriding `train`/`eval`/`sow` is not
# something a model does).
METHOD_NAMES = [
    "embed", "project", "encode", "übersetze", "apply", "init", "setup", "bind", "param",
    "clone", "tabulate", "variables", "copy", "init_", "call", "encode_x",
]  # fmt: skip


def _linen_reserved() -> frozenset[str]:
    import flax.linen as nn

    from nnxgen.codegen.names import GENERATED_NAMES

    return frozenset(dir(nn.Module)) | {"name", "parent", "scope", "variables"} | GENERATED_NAMES


RESERVED = _linen_reserved()

# ---------------------------------------------------------------------------
# Literals.

_STR_ALPHABET = st.sampled_from(
    list("ab Z_{}")
    + ["'", '"', "\\", "\t", "\n", "é", "ß", "日", "✓", "😀", "\x00", "\u2028", "\x7f"]
)
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\x00"}


def _quoted(value: str, quote: str) -> str:
    """A (non-raw) literal for ``value`` using ``quote``, escaping only what is needed."""
    body = "".join(_ESCAPES.get(c, "\\" + c if c == quote else c) for c in value)
    return quote + body + quote


@st.composite
def string_literals(draw) -> str:
    value = draw(st.text(_STR_ALPHABET, max_size=8))
    styles = ["repr", "single", "double", "prefixed"]
    if not any(c in value for c in "\\'\n\x00\u2028\t\x7f"):
        styles.append("raw")
    if not any(c in value for c in '\\"\x00\u2028\x7f') and not value.endswith('"'):
        styles.append("triple")  # may hold a real newline: a multi-line default
    style = draw(st.sampled_from(styles))
    if style == "repr":
        return repr(value)
    if style == "single":
        return _quoted(value, "'")
    if style == "double":
        return _quoted(value, '"')
    if style == "prefixed":
        return "u" + _quoted(value, '"')
    if style == "raw":
        return "r'" + value + "'"
    return '"""' + value + '"""'


@st.composite
def int_literals(draw) -> str:
    n = draw(st.integers(-(10**6), 10**20))
    style = draw(st.sampled_from(["dec", "hex", "under", "oct", "bin"]))
    sign, a = ("-" if n < 0 else ""), abs(n)
    if style == "hex":
        return f"{sign}{draw(st.sampled_from(['0x', '0X']))}{a:x}"
    if style == "under":
        return f"{sign}{a:_}"
    if style == "oct":
        return f"{sign}0o{a:o}"
    if style == "bin":
        return f"{sign}0b{a:b}"
    return str(n)


@st.composite
def float_literals(draw) -> str:
    f = draw(st.floats(allow_nan=False, allow_infinity=False, width=32))
    style = draw(st.sampled_from(["repr", "e", "E", "short"]))
    if style == "e":
        return f"{f:e}"
    if style == "E":
        return f"{f:.2E}"
    if style == "short":
        return draw(
            st.sampled_from(
                ["-0.5", "1e-5", "-1.5e-1", "2.", ".5", "1_0.5", "-0.0", "3j"]
            )
        )
    return repr(f)


# Defaults that need imports, module names, class-scope names, or cannot be
# re-created by an import at all (lambdas, nan).
EXPR_DEFAULTS = [
    "None", "True", "False", "...", "()", "(1,)", "(1, 2)", "(3, (4, 5))", "(1, 'a', None)",
    "[1, 2]", "{'a': 1}", "int",
    "jnp.float32", "jnp.bfloat16", "jax.numpy.tanh", "jax.nn.relu", "jnn.gelu", "nnx.relu",
    "Mode.FAST", "Mode.SLOW", "Mode['FAST']", "SCALE", "-SCALE", "SCALE * 2 + 1", "EPS",
    "GREETING", "(SCALE, EPS)", "LIMIT", "lambda x: x", "lambda x, k=SCALE: x * k",
    "'a' 'b'", "('a'\n        'b')", "f'{SCALE}x'", "b'\\x00ab'",
]  # fmt: skip
# Defaults that are calls (method defaults that are calls are hoisted to module
# constants by the generator), some giving a fresh or unequal object every time.
CALL_DEFAULTS = [
    "dict(b=2)", "frozenset({1})", "Cfg()", "Cfg(width=SCALE, gain=-1.5)", "Cfg(3)",
    "nnx.initializers.zeros_init()", "nnx.initializers.lecun_normal()", "float('nan')",
    "float('inf')", "-float('inf')", "tuple(range(SCALE))", "Cfg(width=len(GREETING))",
]  # fmt: skip


def default_literals() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(EXPR_DEFAULTS),
        st.sampled_from(CALL_DEFAULTS),
        string_literals(),
        int_literals(),
        float_literals(),
    )


# ---------------------------------------------------------------------------
# Annotations (source text as written).

ANNOTATIONS = [
    "int", "float", "str", "bool", "complex", "object", "bytes", "None",
    "Optional[int]", "Union[int, str]", "int | None", "Callable[[jax.Array], jax.Array]",
    "Callable[..., Any]", "Any", "Literal['a', \"b\"]", "list[int]", "dict[str, float]",
    "tuple[int, ...]", "tuple[()]", "jax.Array", "jnp.dtype", "nnx.Initializer", "Mode",
    "Cfg", "'Cfg'", "'Later'", "Optional['Later']", "\"Optional[Later]\"", "'int | None'",
    "Cfg | None", "\"tuple[int, 'Later']\"", "Annotated[int, 'meta data']",
    "'Annotated[Cfg, \"Later\"]'",
]  # fmt: skip
# `Later` is defined after the class: bare, it only works with postponed annotations.
FUTURE_ONLY_ANNOTATIONS = ["Later", "tuple[Later, ...]"]
RETURN_ANNOTATIONS = [
    "jax.Array",
    "'Later'",
    "None",
    "tuple[jax.Array, ...]",
    "Optional[jax.Array]",
    "'jax.Array'",
]
RNGS_ANNOTATIONS = ["nnx.Rngs", "nnx.Rngs | None", "Optional[nnx.Rngs]", None]


def annotations(future: bool) -> st.SearchStrategy[str | None]:
    pool = ANNOTATIONS + (FUTURE_ONLY_ANNOTATIONS if future else [])
    return st.one_of(st.none(), st.sampled_from(pool))


# ---------------------------------------------------------------------------
# Signatures.

POSONLY, POS, VAR, KWONLY, VARKW = (
    "POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD"
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    kind: str  # an inspect.Parameter kind name
    annotation: str | None  # source text, None = unannotated
    default: str | None  # source text, None = no default

    def text(self) -> str:
        prefix = {VAR: "*", VARKW: "**"}.get(self.kind, "")
        out = prefix + self.name
        if self.annotation is not None:
            out += f": {self.annotation}"
        if self.default is not None:
            out += (
                f" = {self.default}"
                if self.annotation is not None
                else f"={self.default}"
            )
        return out


@st.composite
def signatures(draw, *, names: list[str], future: bool, method: bool) -> list[Param]:
    """Parameters (without self) in a valid order: posonly, pos, *var, kwonly, **varkw.

    Sometimes includes an ``rngs`` parameter (positional-or-keyword or keyword-only).
    """
    n_posonly = draw(st.integers(0, 2))
    n_pos = draw(st.integers(0, 3))
    n_kwonly = draw(st.integers(0, 3))
    chosen = draw(
        st.lists(
            st.sampled_from(names),
            unique=True,
            min_size=0,
            max_size=n_posonly + n_pos + n_kwonly,
        )
    )
    n_posonly = min(n_posonly, len(chosen))
    n_pos = min(n_pos, len(chosen) - n_posonly)
    posonly = chosen[:n_posonly]
    pos = chosen[n_posonly : n_posonly + n_pos]
    kwonly = chosen[n_posonly + n_pos :]
    if draw(st.booleans()):  # an rngs slot, which the wrapper drops
        if draw(st.booleans()):
            pos.insert(draw(st.integers(0, len(pos))), "rngs")
        else:
            kwonly.insert(draw(st.integers(0, len(kwonly))), "rngs")
    var = draw(st.sampled_from(VAR_NAMES)) if draw(st.booleans()) else None
    varkw = draw(st.sampled_from(VARKW_NAMES)) if draw(st.booleans()) else None
    if not method and varkw is not None and not (chosen or var):
        varkw = (
            None  # a constructor taking only **kwargs (and rngs) is refused by design
        )

    def one(name: str, kind: str, with_default: bool) -> Param:
        if name == "rngs":
            ann = draw(st.sampled_from(RNGS_ANNOTATIONS))
            return Param(name, kind, ann, "None" if with_default else None)
        ann = draw(annotations(future))
        return Param(
            name, kind, ann, draw(default_literals()) if with_default else None
        )

    positional = [(n, POSONLY) for n in posonly] + [(n, POS) for n in pos]
    n_required = draw(st.integers(0, len(positional)))
    params = [one(n, k, i >= n_required) for i, (n, k) in enumerate(positional)]
    if var is not None:
        params.append(Param(var, VAR, draw(annotations(future)), None))
    params += [one(n, KWONLY, draw(st.booleans())) for n in kwonly]
    if varkw is not None:
        params.append(Param(varkw, VARKW, draw(annotations(future)), None))
    return params


def render_params(params: list[Param], multiline: bool, indent: str) -> str:
    """``self, ...`` with ``/`` and ``*`` markers, on one line or one per line (with comments)."""
    parts = ["self"]
    kinds = [p.kind for p in params]
    for i, p in enumerate(params):
        if (
            p.kind == KWONLY
            and VAR not in kinds
            and (i == 0 or params[i - 1].kind != KWONLY)
        ):
            parts.append("*")
        parts.append(p.text())
        if p.kind == POSONLY and (
            i + 1 == len(params) or params[i + 1].kind != POSONLY
        ):
            parts.append("/")
    if not multiline:
        return ", ".join(parts)
    inner = indent + "    "
    return "\n" + "".join(f"{inner}{part},  # ¿comment?\n" for part in parts) + indent


# ---------------------------------------------------------------------------
# Docstrings.

# Characters that str.splitlines() takes for line breaks but docstrings do not:
# they must stay content in the wrapper's docstring.
DOC_LINE_BOUNDARY_CHARS: list[str] = ["\r", "\x0c", "\x85", "\u2028"]
_DOC_ALPHABET = st.sampled_from(
    list("ab Z.")
    + ['"', "'", '"""', "'''", "\\", "\\n", "\n", "\n    ", "\t", "é", "日", "😀", "ß"]
    + DOC_LINE_BOUNDARY_CHARS
)


@st.composite
def docstrings(draw, indent: str) -> str | None:
    """A docstring *statement* (or None): the value is random, the literal style too."""
    if not draw(st.booleans()):
        return None
    value = "".join(draw(st.lists(_DOC_ALPHABET, min_size=1, max_size=12)))
    # (a blank docstring is no docstring)
    if not value.strip():
        value = "Doc" + value
    style = draw(st.sampled_from(["triple", "repr", "raw"]))
    # r'''...''' holds the value as is (a real "\r" would be read as a newline)
    unsafe_in_raw = ("'''", "\\", "\r")
    raw_ok = not value.endswith("'") and not any(s in value for s in unsafe_in_raw)
    if style == "raw" and raw_ok:
        literal = "r'''" + value + "'''"
    elif style == "repr":
        literal = repr(value)
    else:
        body = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r")
        literal = '"""' + body + '"""'
    return indent + literal


# ---------------------------------------------------------------------------
# Whole modules.


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    params: list[Param]
    returns: str | None
    decorated: bool


@dataclasses.dataclass(frozen=True)
class ModelSource:
    future: bool
    class_name: str
    init: list[Param] | None  # None: no __init__ of its own
    methods: list[Method]  # __call__ first


def wrapper_names(model: ModelSource) -> tuple[dict[str, str], dict[str, str]]:
    """The wrapper's field and method names (the documented renaming rule).

    A constructor parameter or method whose name is Linen's (or a keyword) gets
    ``_`` suffixes until it clashes with no other member of the wrapper:
    parameters first, in order, then methods (``__call__`` first, then sorted).
    """
    init_names = [p.name for p in model.init or []]
    params = [n for n in init_names if n != "rngs"]
    method_names = [m.name for m in model.methods]
    members = (set(params) | set(method_names)) - RESERVED
    fields: dict[str, str] = {}
    for n in params:
        f = n
        if n in RESERVED or keyword.iskeyword(n) or n.startswith("_Nnx"):
            f = n + "_"
            while f in members or f in init_names or f in RESERVED:
                f += "_"
            members.add(f)
        fields[n] = f
    methods = {"__call__": "__call__"}
    for m in sorted(n for n in method_names if n != "__call__"):
        w = m
        if m in RESERVED:
            w = m + "_"
            while w in members or w in RESERVED:
                w += "_"
            members.add(w)
        methods[m] = w
    return fields, methods


@st.composite
def model_sources(draw) -> tuple[ModelSource, str]:
    future = draw(st.booleans())
    class_name = draw(st.sampled_from(CLASS_NAMES))
    init = (
        draw(signatures(names=INIT_NAMES, future=future, method=False))
        if draw(st.sampled_from([True] * 9 + [False]))  # mostly with an __init__
        else None
    )
    init_names = {p.name for p in init or []}
    # A method named like a constructor parameter is shadowed by the attribute and is
    # not wrapped (by design): keep the names apart.
    free = [m for m in METHOD_NAMES if m not in init_names]
    extra = draw(st.lists(st.sampled_from(free), unique=True, max_size=2))
    methods = []
    for name in ["__call__", *extra]:
        params = draw(signatures(names=METHOD_PARAM_NAMES, future=future, method=True))
        returns = draw(st.one_of(st.none(), st.sampled_from(RETURN_ANNOTATIONS)))
        methods.append(Method(name, params, returns, draw(st.booleans())))
    model = ModelSource(future, class_name, init, methods)

    # Render it.
    lines = []
    if draw(st.booleans()):
        lines.append('"""A fuzzed module."""')
    if future:
        lines.append("from __future__ import annotations")
    lines.append(PRELUDE)
    lines.append(f"class {class_name}(nnx.Module):")
    doc = draw(docstrings("    "))
    if doc:
        lines.append(doc)
    lines.append("    LIMIT = 4\n")
    if init is not None:
        sig = render_params(init, draw(st.booleans()), "    ")
        lines.append(f"    def __init__({sig}):")
        lines.append("        self.w = _make_param()\n")
    for m in methods:
        sig = render_params(m.params, draw(st.booleans()), "    ")
        ret = f" -> {m.returns}" if m.returns is not None else ""
        if m.decorated:
            lines.append("    @_traced")
        lines.append(f"    def {m.name}({sig}){ret}:")
        doc = draw(docstrings("        "))
        if doc:
            lines.append(doc)
        first = next(
            (p.name for p in m.params if p.kind in (POSONLY, POS) and p.name != "rngs"),
            None,
        )
        lines.append(f"        return {first}\n")
    lines.append("    def _helper(self):\n        return None")
    lines.append(TRAILER)
    return model, "\n".join(lines)


# ---------------------------------------------------------------------------
# Comparison helpers.


class _Unquote(ast.NodeTransformer):
    """Replace every string constant (forward reference) by the expression it holds,
    except inside ``Literal[...]`` and in ``Annotated[T, ...]``'s metadata."""

    def visit_Constant(self, node: ast.Constant):
        if isinstance(node.value, str):
            return self.visit(ast.parse(node.value.strip(), mode="eval").body)
        return node

    def visit_Subscript(self, node: ast.Subscript):
        node.value = self.visit(node.value)
        name = (
            node.value.attr
            if isinstance(node.value, ast.Attribute)
            else getattr(node.value, "id", "")
        )
        if name == "Annotated" and isinstance(node.slice, ast.Tuple):
            node.slice.elts[0] = self.visit(node.slice.elts[0])
        elif name != "Literal":
            node.slice = self.visit(node.slice)
        return node


def canon(text: str) -> str:
    """Canonical text of an annotation: forward refs unquoted, spacing/quotes normalised."""
    return ast.unparse(_Unquote().visit(ast.parse(text.strip(), mode="eval").body))


def _has_forward_ref(text: str) -> bool:
    return canon(text) != ast.unparse(ast.parse(text.strip(), mode="eval"))


def norm_type(t: Any) -> Any:
    """An annotation object, comparable across ``typing``/``collections.abc`` spellings.

    The generator imports ABCs such as ``Callable`` from ``collections.abc`` even when
    the source imports them from ``typing`` (same text, non-deprecated source), and
    ``typing.Callable[[A], B] != collections.abc.Callable[[A], B]``: compare origins
    and arguments instead (``typing.Callable[...] | None`` is a ``typing.Union``,
    ``collections.abc.Callable[...] | None`` a ``types.UnionType``).
    """
    origin = typing.get_origin(t)
    if origin is None:
        return t
    if origin is types.UnionType:  # `A | B` is typing.Union[A, B] when A is typing's
        origin = typing.Union
    args = typing.get_args(t)
    if not args:
        return origin
    return (
        origin,
        tuple(
            tuple(map(norm_type, a)) if isinstance(a, list) else norm_type(a)
            for a in args
        ),
    )


def same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - an == that raises means "not the same"
        return False


def _spells_out_none(src: str) -> bool:
    """The annotation text allows None in so many words (see ``implicit_optional``)."""
    node = ast.parse(canon(src), mode="eval").body
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.BinOp):
        return _spells_out_none(ast.unparse(node.left)) or _spells_out_none(
            ast.unparse(node.right)
        )
    if isinstance(node, ast.Subscript):
        head = ast.unparse(node.value).split(".")[-1]
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Optional":
            return True
        if head == "Union":
            return any(_spells_out_none(ast.unparse(a)) for a in args)
        if head == "Annotated":
            return _spells_out_none(ast.unparse(args[0]))
        if head == "Literal":
            return any(isinstance(a, ast.Constant) and a.value is None for a in args)
        return False
    return ast.unparse(node).split(".")[-1] in ("Any", "object")


def implicit_optional(src: str | None, default: Any) -> str | None:
    """The wrapper's annotation text for source text ``src`` and default ``default``:
    ``x: T = None`` (an implicit Optional) is written ``x: T | None = None``."""
    if src is None or default is not None or _spells_out_none(src):
        return src
    return f"{src} | None"


def check_annotation(
    what: str,
    gen: Any,
    nnx_ann: Any,
    src: str | None,
    gen_ns: dict,
    src_ns: dict,
    default: Any = _EMPTY,
):
    """``gen``: the wrapper's annotation (a string: the file has postponed annotations).

    ``src``: the annotation text we wrote in the NNX source (None = unannotated).
    ``nnx_ann``: what ``inspect`` reports for the NNX parameter (a string under the
    source's ``from __future__ import annotations`` or for a quoted annotation,
    otherwise the evaluated object).

    Compared: (a) the wrapper's text equals the source text, both canonicalised
    (forward-ref quotes removed, quote style and spacing normalised by ast); (b) both
    texts, evaluated (forward refs resolved) in the generated module and in the NNX
    module respectively, give equal objects (up to ``norm_type``), i.e. the generator
    imported the right names; (c) the oracle agrees with ``inspect``: a string annotation canonicalises
    to the source text, an object annotation equals the evaluated source text (only
    checked when the source text holds no forward reference, where Python keeps
    ``ForwardRef`` objects that compare by name). An unannotated NNX parameter
    becomes ``Any`` in the wrapper; an implicit Optional (``T = None``) becomes
    ``T | None`` (see ``implicit_optional``).
    """
    expected = implicit_optional(src, default)
    if src is None:
        assert nnx_ann is _EMPTY, what
        assert gen == "Any", (what, gen)
        return
    assert isinstance(gen, str), (what, gen)
    assert canon(gen) == canon(expected), (what, gen, expected)
    gen_obj = eval(canon(gen), gen_ns)
    assert norm_type(gen_obj) == norm_type(eval(canon(expected), src_ns)), what
    src_obj = eval(canon(src), src_ns)
    if isinstance(nnx_ann, str):
        assert canon(nnx_ann) == canon(src), (what, nnx_ann, src)
    elif not _has_forward_ref(src):
        assert norm_type(nnx_ann) == norm_type(src_obj), (what, nnx_ann, src_obj)


def _cleandoc_3_12(doc: str) -> str:
    """``inspect.cleandoc`` as Python 3.11 / 3.12 define it (any whitespace that
    ``str.lstrip`` strips is indentation; 3.13 counts only spaces), so that the
    expected text is the same on every interpreter, as the generated bytes are."""
    lines = doc.expandtabs().split("\n")
    margin = min(
        (len(ln) - len(ln.lstrip()) for ln in lines[1:] if ln.lstrip()), default=0
    )
    lines = [lines[0].lstrip()] + [ln[margin:] for ln in lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def _doc_lines(doc: str | None) -> list[str]:
    """Docstring as ``inspect.cleandoc`` shows it, ignoring trailing whitespace on
    each line and whitespace-only leading/trailing lines (the generator strips them,
    as ruff format does). Tabs are content, not indentation (nnxgen keeps them as
    written; ``cleandoc`` would expand them relative to the *re-indented* column)."""
    if doc is None:
        return []
    lines = [line.rstrip() for line in doc.split("\n")]
    lines[0] = lines[0].lstrip()
    arrow = "\N{RIGHTWARDS ARROW}"
    cleaned = _cleandoc_3_12("\n".join(lines).replace("\t", arrow)).replace(
        arrow, "\t"
    )
    lines = [line.rstrip() for line in cleaned.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


# ---------------------------------------------------------------------------
# The test.


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("nnxgen_fuzz")
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


def _import_fresh(d, name: str, text: str, what: str):
    """Import ``text`` as module ``name``.

    An error is re-raised as an AssertionError from *this* line, outside the except
    block: every example has its own module file, and Hypothesis tells failures apart
    by where they were raised (context included), so an error raised inside the
    fuzzed file would look like a new failure on every replay (a FlakyFailure) and
    could not be shrunk.
    """
    (d / f"{name}.py").write_text(text, encoding="utf-8")
    importlib.invalidate_caches()
    try:
        return importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - any import error is the finding
        message = f"{what} does not import: {type(err).__name__}: {err}\n{text}"
    raise AssertionError(message)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=model_sources())
def test_generated_wrapper_mirrors_random_nnx_module(fuzz_dir, case):
    model, source = case
    n = next(_counter)
    src_name = f"nnxfuzz_{os.getpid()}_{n}"
    gen_name = f"{src_name}_linen"
    try:
        src_mod = _import_fresh(fuzz_dir, src_name, source, "the fuzzed NNX source")
        nnx_cls = getattr(src_mod, model.class_name)

        # 1-2. generation succeeds, compiles, is byte-stable
        target = f"{src_name}:{model.class_name}"
        text = generate.generate([target], f"{gen_name}.py")
        compile(text, "generated.py", "exec")
        assert generate.generate([target], f"{gen_name}.py") == text

        # 3. the generated module imports
        gen_mod = _import_fresh(fuzz_dir, gen_name, text, "the generated wrapper")
        wrapper = getattr(gen_mod, model.class_name)
        import nnxgen.runtime as rt

        assert rt.nnx_class_of(wrapper) is nnx_cls
        src_ns, gen_ns = vars(src_mod), vars(gen_mod)

        _check_fields(model, nnx_cls, wrapper, src_ns, gen_ns)
        _check_methods(model, nnx_cls, wrapper, src_ns, gen_ns)
        # exactly the public methods (and __call__) are wrapped, nothing else (a field
        # whose default is a function, e.g. `act = jax.nn.relu`, is not a method)
        field_names = {f.name for f in dataclasses.fields(wrapper)}
        defined = {
            k
            for k, v in vars(wrapper).items()
            if inspect.isfunction(v)
            and not getattr(v, "__nnxgen_init__", False)  # the runtime's init
            and k not in field_names
            and (k == "__call__" or not k.startswith("_"))
        }
        assert defined == set(wrapper_names(model)[1].values()), defined
        assert "_helper" not in vars(wrapper)
        assert _doc_lines(vars(wrapper).get("__doc__")) == _doc_lines(
            nnx_cls.__doc__
        ) or (not _doc_lines(nnx_cls.__doc__))

        # 6. lint-clean and formatted under ruff's defaults (copied spellings that
        # trip a rule get exactly the file-level noqa codes they need)
        _check_ruff(gen_name, text)
    finally:
        for name in (gen_name, src_name):
            sys.modules.pop(name, None)
            try:
                (fuzz_dir / f"{name}.py").unlink()
            except FileNotFoundError:
                pass


def _check_ruff(name: str, text: str) -> None:
    # (from the repository root, which is also where the generator ran: the same
    # first-party modules for the import sections)
    d = ROOT
    stdin = ["--isolated", "--no-cache", "--stdin-filename", f"{name}.py", "-"]
    ruff_bin = tool("ruff")
    lint = subprocess.run(
        [ruff_bin, "check", "--output-format", "concise", *stdin],
        input=text, cwd=d, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr + text
    fmt = subprocess.run(
        [ruff_bin, "format", *stdin],
        input=text, cwd=d, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert fmt.returncode == 0, fmt.stderr
    ours, theirs = text.splitlines(), fmt.stdout.splitlines()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, ours, theirs).get_opcodes():
        # Known limit: one parameter (or field) that alone overflows 88 columns,
        # which ruff splits inside its annotation or default; nnxgen keeps it whole.
        assert tag == "equal" or any(width(line) > 88 for line in ours[i1:i2]), (
            "".join(difflib.unified_diff(text.splitlines(True), fmt.stdout.splitlines(True)))
        )


def _check_fields(model: ModelSource, nnx_cls, wrapper, src_ns, gen_ns) -> None:
    """4. one field per constructor parameter except rngs, in order, then Linen's own
    ``parent``/``name``; annotations as written (``*args: T`` -> ``tuple[T, ...]``,
    ``**kw: T`` -> ``dict[str, T]``); defaults ``is``/``==`` the NNX defaults."""
    params = []
    if model.init is not None:
        sig = inspect.signature(nnx_cls.__init__)
        params = [p for p in list(sig.parameters.values())[1:] if p.name != "rngs"]
        assert [p.name for p in params] == [
            p.name for p in model.init if p.name != "rngs"
        ]
    written = {p.name: p for p in model.init or []}
    names = wrapper_names(model)[0]
    fields = dataclasses.fields(wrapper)
    assert [f.name for f in fields[-2:]] == ["parent", "name"]
    fields = fields[:-2]
    assert [f.name for f in fields] == [names[p.name] for p in params]
    for p, f in zip(params, fields):
        what = f"field {f.name} ({p.name})"
        src = written[p.name].annotation
        if p.kind is p.VAR_POSITIONAL:
            assert f.default == () and type(f.default) is tuple, what
            expected = f"tuple[{src or 'Any'}, ...]"
            assert canon(f.type) == canon(expected), (what, f.type)
            continue
        if p.kind is p.VAR_KEYWORD:
            assert f.default is dataclasses.MISSING and f.default_factory() == {}, what
            expected = f"dict[str, {src or 'Any'}]"
            assert canon(f.type) == canon(expected), (what, f.type)
            continue
        check_annotation(what, f.type, p.annotation, src, gen_ns, src_ns, p.default)
        if p.default is _EMPTY:
            assert f.default is dataclasses.MISSING, what
            assert f.default_factory is dataclasses.MISSING, what
        else:
            value = (
                f.default
                if f.default is not dataclasses.MISSING
                else f.default_factory()
            )
            assert same_value(value, p.default), (what, value, p.default)


def _check_methods(model: ModelSource, nnx_cls, wrapper, src_ns, gen_ns) -> None:
    """5. each method: parameters (minus self, rngs and the added ``train``) have the
    NNX names, kinds, defaults (``is``/``==``) and annotations (see check_annotation);
    the added ``train`` is ``*, train: bool | None = None`` (absent when the NNX method
    has its own ``train``, which is then mirrored like any other); return annotation and
    docstring mirrored."""
    method_names = wrapper_names(model)[1]
    for m in model.methods:
        wname = method_names[m.name]
        assert wname in vars(wrapper), wname
        src_sig = inspect.signature(getattr(nnx_cls, m.name))  # follows __wrapped__
        gen_sig = inspect.signature(getattr(wrapper, wname))
        src_params = [
            p for p in list(src_sig.parameters.values())[1:] if p.name != "rngs"
        ]
        gen_params = list(gen_sig.parameters.values())
        assert gen_params[0].name == "self"
        gen_params = gen_params[1:]
        if "train" not in src_sig.parameters:
            train = [p for p in gen_params if p.name == "train"]
            assert len(train) == 1, (wname, gen_sig)
            (t,) = train
            assert t.kind is t.KEYWORD_ONLY and t.default is None, (wname, gen_sig)
            assert t.annotation == "bool | None", (wname, gen_sig)
            gen_params = [p for p in gen_params if p.name != "train"]
        written = {p.name: p for p in m.params}
        assert [(p.name, p.kind) for p in gen_params] == [
            (p.name, p.kind) for p in src_params
        ], (
            wname,
            gen_sig,
            src_sig,
        )
        for g, s in zip(gen_params, src_params):
            what = f"{wname}({g.name})"
            if s.default is _EMPTY:
                assert g.default is _EMPTY, what
            else:
                assert same_value(g.default, s.default), (what, g.default, s.default)
            check_annotation(
                what,
                g.annotation,
                s.annotation,
                written[s.name].annotation,
                gen_ns,
                src_ns,
                s.default,
            )
        if m.returns is None:
            assert gen_sig.return_annotation is _EMPTY, wname
        else:
            check_annotation(
                f"{wname} -> ",
                gen_sig.return_annotation,
                src_sig.return_annotation,
                m.returns,
                gen_ns,
                src_ns,
            )
        src_doc = _doc_lines(getattr(nnx_cls, m.name).__doc__)
        assert _doc_lines(getattr(wrapper, wname).__doc__) == src_doc, wname
