"""How fast ``nnxgen wrap`` / ``nnxgen check`` generate wrappers, per class.

Run from the repository root::

    .venv/bin/python bench/gen_speed.py            # ~1 minute
    .venv/bin/python bench/gen_speed.py --quick    # fewer repetitions
    .venv/bin/python bench/gen_speed.py --json out.json

A package of 100 small NNX classes with varied signatures (positional-only and
keyword-only parameters, literal / tuple / dtype / callable / initializer / enum /
module-constant defaults, ``Sequence`` and ``Optional`` annotations, submodule
arguments, extra methods, methods taking ``rngs``, ``*args``, parameter-free
modules, ...) is written to a temp dir as three modules holding the first 10, 50
and 100 classes. Then, in this process (jax/flax are imported once up front;
that import is timed separately, as is a whole ``nnxgen wrap`` subprocess):

* ``wrap``:  ``nnxgen wrap pkg.modN -o out.py`` through the click entry point. Every
  repetition is *cold* as a fresh CLI run would be: the module's file gets a new
  mtime and is dropped from ``sys.modules``, so it is re-imported and its source
  re-parsed;
* ``check``: ``nnxgen check out.py`` on the up-to-date file, cold the same way;
* ``check (warm)``: the same check right after, with the module imported and parsed.

Reported: median ms per run and per class, the fitted ``t = a + b*N`` (fixed cost
``a`` and marginal ms per class ``b``), whether growth is linear (the marginal cost
per class from 50 to 100 classes is within 1.5x of that from 10 to 50), and the
target: < 20 ms per class.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PKG = "nnxgen_genbench_pkg"
SIZES = (10, 50, 100)
TARGET_MS_PER_CLASS = 20.0

HEADER = '''\
"""{n} small NNX classes for nnxgen's generation benchmark (written at run time)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

WIDTH = 32
SCALE = 0.5


class Act(enum.Enum):
    RELU = "relu"
    GELU = "gelu"


def zeros_init(key, shape, dtype=jnp.float32):
    return jnp.zeros(shape, dtype)

'''

# Each template is one class; {i} is its index, {prev} an earlier class (for submodule
# arguments). Bodies are plausible NNX code; the generator only reads signatures,
# docstrings and the source text of annotations and defaults.
TEMPLATES = [
    '''
class Block{i}(nnx.Module):
    """A linear layer {i}."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)
''',
    '''
class Block{i}(nnx.Module):
    """Linear with defaults {i}."""

    def __init__(self, din: int, dout: int = 16, use_bias: bool = True, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, use_bias=use_bias, rngs=rngs)

    def __call__(self, x: jax.Array, scale: float = 1.0) -> jax.Array:
        return self.linear(x) * scale
''',
    '''
class Block{i}(nnx.Module):
    """Dropout and BatchNorm {i} (mode-dependent)."""

    def __init__(
        self,
        features: int,
        *,
        dropout_rate: float = 0.1,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        rngs: nnx.Rngs,
    ):
        self.bn = nnx.BatchNorm(features, momentum=momentum, epsilon=epsilon, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(self.bn(x))
''',
    '''
class Block{i}(nnx.Module):
    """Convolutions over a feature pyramid {i}."""

    def __init__(
        self,
        in_channels: int,
        features: Sequence[int] = (8, 16),
        kernel_size: tuple[int, int] = (3, 3),
        padding: str = "SAME",
        dtype: jnp.dtype = jnp.float32,
        *,
        rngs: nnx.Rngs,
    ):
        chans = (in_channels, *features)
        self.convs = nnx.List(
            [nnx.Conv(a, b, kernel_size, padding=padding, dtype=dtype, rngs=rngs)
             for a, b in zip(chans[:-1], chans[1:])]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = nnx.relu(conv(x))
        return x
''',
    '''
class Block{i}(nnx.Module):
    """Activation and initializer defaults {i}."""

    def __init__(
        self,
        din: int,
        width: int = WIDTH,
        *,
        act: Callable[[jax.Array], jax.Array] = nnx.relu,
        kernel_init: nnx.Initializer = nnx.initializers.lecun_normal(),
        bias_init: nnx.Initializer = zeros_init,
        rngs: nnx.Rngs,
    ):
        self.linear = nnx.Linear(din, width, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.act(self.linear(x))

    def logits(self, x: jax.Array, temperature: float = SCALE) -> jax.Array:
        """Scaled pre-activations."""
        return self.linear(x) / temperature
''',
    '''
class Block{i}(nnx.Module):
    """Positional-only and keyword-only parameters, enum and None defaults {i}."""

    def __init__(
        self,
        din: int,
        /,
        dout: int = 8,
        *,
        act: Act = Act.GELU,
        label: str = "block-{i}",
        extra: Optional[int] = None,
        rngs: nnx.Rngs,
    ):
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array, *others: jax.Array) -> jax.Array:
        for o in others:
            x = x + o
        y = self.linear(x)
        return nnx.relu(y) if self.act is Act.RELU else nnx.gelu(y)
''',
    '''
class Block{i}(nnx.Module):
    """Takes a submodule {i}."""

    def __init__(self, inner: {prev}, dout: int = 4, *, rngs: nnx.Rngs):
        self.inner = inner
        self.head = nnx.Linear(WIDTH, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(x)
''',
    '''
class Block{i}(nnx.Module):
    """No rngs: a parameter-free scale {i}."""

    def __init__(self, n: int, value: float = 1.0):
        self.scale = nnx.Param(jnp.full((n,), value))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.scale[...]
''',
    '''
class Block{i}(nnx.Module):
    """Attention with a method taking rngs {i}."""

    def __init__(self, num_heads: int, features: int, dropout_rate: float = 0.0, *, rngs: nnx.Rngs):
        self.attn = nnx.MultiHeadAttention(
            num_heads=num_heads, in_features=features, dropout_rate=dropout_rate,
            decode=False, rngs=rngs,
        )

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        return self.attn(x, mask=mask)

    def sample(self, x: jax.Array, *, rngs: nnx.Rngs) -> jax.Array:
        """Adds noise drawn from ``rngs``."""
        return self.attn(x) + jax.random.normal(rngs.noise(), x.shape)
''',
    '''
class Block{i}(nnx.Module):
    """LayerNorm + MLP with many keyword defaults {i}."""

    def __init__(
        self,
        features: int,
        hidden: int = 4 * WIDTH,
        *,
        epsilon: float = 1e-6,
        use_scale: bool = True,
        use_bias: bool = True,
        param_dtype: jnp.dtype = jnp.float32,
        precision: Optional[jax.lax.Precision] = None,
        rngs: nnx.Rngs,
    ):
        self.norm = nnx.LayerNorm(features, epsilon=epsilon, use_scale=use_scale,
                                  use_bias=use_bias, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = nnx.Linear(features, hidden, precision=precision, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, features, precision=precision, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.fc2(nnx.gelu(self.fc1(self.norm(x))))

    def normed(self, x: jax.Array) -> jax.Array:
        return self.norm(x)
''',
]


def module_source(n: int) -> str:
    parts = [HEADER.format(n=n)]
    for i in range(n):
        t = TEMPLATES[i % len(TEMPLATES)]
        prev = f"Block{i - 1}" if i else "nnx.Module"
        parts.append(textwrap.dedent(t).format(i=i, prev=prev))
    return "".join(parts)


def write_package(root: Path) -> dict[int, str]:
    pkg = root / PKG
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        '"""Generated for nnxgen\'s generation benchmark."""\n'
    )
    mods = {}
    for n in SIZES:
        (pkg / f"mod{n}.py").write_text(module_source(n))
        mods[n] = f"{PKG}.mod{n}"
    return mods


def make_cold(modname: str, root: Path, bump: list[int]) -> None:
    """Next use re-imports and re-parses ``modname`` (new mtime, not in sys.modules)."""
    path = root / (modname.replace(".", "/") + ".py")
    bump[0] += 1
    t = time.time() + bump[0]
    os.utime(path, (t, t))
    sys.modules.pop(modname, None)
    importlib.invalidate_caches()


def run_cli(args: list[str]) -> tuple[float, int, str]:
    """(seconds, exit code, output) of ``nnxgen ARGS`` run in this process."""
    import click

    from nnxgen import cli

    out = io.StringIO()
    code = 0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            cli.main.main(args=args, prog_name="nnxgen", standalone_mode=False)
        except SystemExit as e:
            code = int(e.code or 0)
        except click.ClickException as e:  # standalone_mode=False lets these through
            code = e.exit_code or 1
            print(f"nnxgen: error: {e.format_message()}")
    dt = time.perf_counter() - t0
    return dt, code, out.getvalue()


def time_import(code: str, reps: int) -> float:
    """Median seconds that ``code`` takes in a fresh interpreter."""

    def one(c: str) -> float:
        p = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import time; t=time.perf_counter(); {c}; print(time.perf_counter()-t)",
            ],
            capture_output=True,
            text=True,
            cwd=str(ROOT),
            check=True,
        )
        return float(p.stdout.strip().splitlines()[-1])

    return statistics.median(one(code) for _ in range(reps))


def fit(ns: list[int], ts: list[float]) -> tuple[float, float]:
    """Least-squares ``t = a + b*n``."""
    mn, mt = statistics.mean(ns), statistics.mean(ts)
    b = sum((n - mn) * (t - mt) for n, t in zip(ns, ts)) / sum(
        (n - mn) ** 2 for n in ns
    )
    return mt - b * mn, b


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions per size (default 3, quick 1)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile one cold wrap of the 100-class module; list the top entries",
    )
    p.add_argument("--json", metavar="PATH", help="write results as JSON")
    a = p.parse_args(argv)
    reps = a.reps or (1 if a.quick else 3)
    t_start = time.perf_counter()

    results: dict[str, Any] = {"reps": reps}
    # Import costs, each in a fresh interpreter (not part of the per-class figures).
    ireps = 1 if a.quick else 2
    results["import_s"] = {
        "nnxgen.cli": time_import("import nnxgen.cli", ireps),
        "jax+flax.nnx+flax.linen": time_import(
            "import jax, flax.nnx, flax.linen", ireps
        ),
        "nnxgen.generate (+jax, flax, libcst, jinja2)": time_import(
            "import nnxgen.generate, nnxgen.inspector, flax.nnx, flax.linen, libcst, jinja2",
            ireps,
        ),
    }

    # Import everything once in this process so the timed runs exclude it.
    t0 = time.perf_counter()
    import flax.linen  # noqa: F401
    import jax  # noqa: F401
    from flax import nnx  # noqa: F401

    from nnxgen import cli, generate, inspector, render  # noqa: F401

    results["in_process_import_s"] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="nnxgen_genbench_") as tmp:
        root = Path(tmp)
        mods = write_package(root)
        sys.path.insert(0, tmp)
        outdir = root / "out"
        outdir.mkdir()
        bump = [0]

        # Warm-up: jinja2 template compilation, libcst grammar, first-use caches.
        make_cold(mods[SIZES[0]], root, bump)
        _, code, text = run_cli(
            ["wrap", mods[SIZES[0]], "-o", str(outdir / "warmup.py")]
        )
        if code:
            print(text)
            raise SystemExit(f"warm-up wrap failed (exit {code})")

        per: dict[int, dict[str, list[float]]] = {
            n: {"wrap": [], "check": [], "check_warm": []} for n in SIZES
        }
        outputs = {n: outdir / f"mod{n}_linen.py" for n in SIZES}
        for r in range(reps):
            order = list(SIZES) if r % 2 == 0 else list(reversed(SIZES))
            for n in order:
                make_cold(mods[n], root, bump)
                dt, code, text = run_cli(["wrap", mods[n], "-o", str(outputs[n])])
                if code:
                    print(text)
                    raise SystemExit(f"nnxgen wrap {mods[n]} failed (exit {code})")
                per[n]["wrap"].append(dt)
                make_cold(mods[n], root, bump)
                dt, code, text = run_cli(["check", str(outputs[n])])
                if code:
                    print(text)
                    raise SystemExit(f"nnxgen check {outputs[n]} failed (exit {code})")
                per[n]["check"].append(dt)
                dt, code, _ = run_cli(["check", str(outputs[n])])
                per[n]["check_warm"].append(dt)

        if a.profile:
            make_cold(mods[100], root, bump)
            pr = cProfile.Profile()
            pr.enable()
            run_cli(["wrap", mods[100], "-o", str(outdir / "profiled.py")])
            pr.disable()
            buf = io.StringIO()
            pstats.Stats(pr, stream=buf).sort_stats("cumulative").print_stats(
                r"nnxgen/|inspect\.py", 25
            )
            results["profile_text"] = buf.getvalue()

        classes = {n: outputs[n].read_text().count("\nclass ") for n in SIZES}
        results["classes_generated"] = classes
        results["lines_generated"] = {
            n: outputs[n].read_text().count("\n") for n in SIZES
        }

        # One whole CLI run in a subprocess (interpreter start + imports + generation).
        sub_out = outdir / "sub_linen.py"
        t0 = time.perf_counter()
        sp = subprocess.run(
            [sys.executable, "-m", "nnxgen", "wrap", mods[100], "-o", str(sub_out)],
            capture_output=True,
            text=True,
            cwd=tmp,
            check=False,
        )
        results["subprocess_wrap_100_s"] = time.perf_counter() - t0
        results["subprocess_wrap_ok"] = sp.returncode == 0

    rows = {}
    for n in SIZES:
        rows[n] = {k: statistics.median(v) * 1e3 for k, v in per[n].items()}
        rows[n]["samples_ms"] = {
            k: [round(x * 1e3, 1) for x in v] for k, v in per[n].items()
        }
    results["ms"] = rows

    print(
        f"nnxgen generation speed ({reps} cold repetitions per size, medians; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    print("Import time in a fresh interpreter (not in the figures below):")
    for k, v in results["import_s"].items():
        print(f"  {k:<46} {v * 1e3:8.0f} ms")
    print()
    head = (
        f"{'classes':>7} {'lines':>6} {'wrap ms':>9} {'ms/class':>9} {'check ms':>9} "
        f"{'ms/class':>9} {'check warm':>11} {'ms/class':>9}"
    )
    print(head)
    print("-" * len(head))
    for n in SIZES:
        r = rows[n]
        print(
            f"{classes[n]:>7} {results['lines_generated'][n]:>6} {r['wrap']:>9.0f} "
            f"{r['wrap'] / n:>9.2f} {r['check']:>9.0f} {r['check'] / n:>9.2f} "
            f"{r['check_warm']:>11.0f} {r['check_warm'] / n:>9.2f}"
        )
    print()
    verdicts = {}
    for cmd in ("wrap", "check", "check_warm"):
        ts = [rows[n][cmd] for n in SIZES]
        a_, b_ = fit(list(SIZES), ts)
        m1 = (rows[50][cmd] - rows[10][cmd]) / 40
        m2 = (rows[100][cmd] - rows[50][cmd]) / 50
        linear = m1 > 0 and m2 <= 1.5 * m1
        worst = max(rows[n][cmd] / n for n in SIZES)
        ok = worst < TARGET_MS_PER_CLASS and b_ < TARGET_MS_PER_CLASS
        verdicts[cmd] = {
            "fixed_ms": a_,
            "ms_per_class_fit": b_,
            "marginal_10_50": m1,
            "marginal_50_100": m2,
            "linear": linear,
            "target_pass": ok,
        }
        print(
            f"{cmd:<11} fit t = {a_:6.0f} ms + {b_:5.2f} ms x classes; marginal ms/class "
            f"10->50: {m1:5.2f}, 50->100: {m2:5.2f} -> {'linear' if linear else 'SUPERLINEAR'}; "
            f"{'PASS' if ok else 'FAIL'} < {TARGET_MS_PER_CLASS:.0f} ms/class "
            f"(worst {worst:.2f} ms/class)"
        )
    results["verdicts"] = verdicts
    print()
    print(
        f"whole `python -m nnxgen wrap` of 100 classes in a subprocess: "
        f"{results['subprocess_wrap_100_s'] * 1e3:.0f} ms "
        f"({'ok' if results['subprocess_wrap_ok'] else 'FAILED'}; interpreter start + imports + "
        f"generation)"
    )
    if "profile_text" in results:
        print(
            "\ncProfile of one cold `nnxgen wrap` of 100 classes (entries in nnxgen/ and inspect.py, "
            "by cumulative time):"
        )
        lines = results["profile_text"].splitlines()
        start = next(
            (i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls")), 0
        )
        for ln in lines[start:]:
            if ln.strip():
                print(
                    "  "
                    + ln.replace(str(ROOT) + "/", "").replace(
                        os.path.dirname(os.__file__) + "/", ""
                    )[:150]
                )
    results["total_s"] = time.perf_counter() - t_start
    print(f"total {results['total_s']:.0f}s")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
