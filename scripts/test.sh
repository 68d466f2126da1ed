#!/usr/bin/env bash
# Build (or reuse) a test venv for one stack and run nnxgen's suite in it.
#
#   scripts/test.sh [PYTHON] [PYTEST_ARGS...]      (default: python3, -n 2 -q)
#
# The stack follows the interpreter:
#   * Python 3.11 (the lowest that pyproject.toml's requires-python allows): the FLOOR.
#     jax/jaxlib, flax and kauldron are pinned (==) to the lower bounds that
#     pyproject.toml declares (dependencies and the `kauldron` extra), and so are
#     nnxgen's other runtime dependencies. Venv: .venv
#   * Python 3.12 or newer: the NEWEST stack, whatever the package index serves
#     (unpinned above the floor; --upgrade-strategy eager). Venv: .venv-X.Y
# NNXGEN_STACK=floor|newest overrides the choice, VENV=DIR the venv location.
# NNXGEN_NO_INSTALL=1 skips the install step and runs the tests in the venv as it is
# (the quick loop: `NNXGEN_NO_INSTALL=1 scripts/test.sh python3.11 -q -m "not slow"`;
# see CONTRIBUTING.md).
#
# nnxgen is installed editable in setuptools' *strict* mode (a tree of links under
# build/, put on sys.path by a plain .pth entry), which pyright and mypy resolve; the
# default mode's import hook is invisible to them. A file added under nnxgen/ or
# templates/ appears in that tree at the next install (this script re-installs).
#
# kauldron itself is installed with --no-deps (its full dependency set pulls
# TensorFlow); the kd.train.Trainer test builds its own full-install venv for the
# same kauldron/jax/flax versions (tests/test_kauldron_trainer.py).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${1:-python3}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- -n 2 -q

ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
floor_py=$("$PY" - <<'EOF'
import re, tomllib
spec = tomllib.load(open("pyproject.toml", "rb"))["project"]["requires-python"]
print(re.fullmatch(r">=\s*(\d+\.\d+)", spec).group(1))
EOF
)
if [ -z "${NNXGEN_STACK:-}" ]; then
    if [ "$ver" = "$floor_py" ]; then NNXGEN_STACK=floor; else NNXGEN_STACK=newest; fi
fi
case "$NNXGEN_STACK" in
    floor) VENV=${VENV:-.venv} ;;
    newest) VENV=${VENV:-.venv-$ver} ;;
    *) echo "NNXGEN_STACK must be floor or newest, not '$NNXGEN_STACK'" >&2; exit 2 ;;
esac
export NNXGEN_STACK

echo "== nnxgen test: $NNXGEN_STACK stack, Python $ver ($PY), venv $VENV"
VPY="$VENV/bin/python"
# the editable install that static checkers resolve (README: Development)
EDITABLE=(--config-settings editable_mode=strict -e '.[test,typing]')

install() {
    [ -x "$VPY" ] || "$PY" -m venv "$VENV"
    if [ "$NNXGEN_STACK" = floor ]; then
        # "pkg==lower-bound" for every runtime dependency, jaxlib == jax, and kauldron
        constraints="$VENV/floor-constraints.txt"
        "$VPY" - >"$constraints" <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = project["dependencies"] + project["optional-dependencies"]["kauldron"]
for req in reqs:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*>=\s*([0-9][0-9.]*)", req)
    assert m, f"no lower bound to pin in {req!r}"
    print(f"{m[1]}=={m[2]}")
    if m[1] == "jax":
        print(f"jaxlib=={m[2]}")
EOF
        kauldron=$(grep '^kauldron==' "$constraints")
        "$VPY" -m pip install -q "${EDITABLE[@]}" -c "$constraints"
        "$VPY" -m pip install -q --no-deps "$kauldron"
    else
        "$VPY" -m pip install -q -U --upgrade-strategy eager "${EDITABLE[@]}"
        "$VPY" -m pip install -q -U --no-deps kauldron
    fi
}

t0=$SECONDS
if [ "${NNXGEN_NO_INSTALL:-}" = 1 ]; then
    [ -x "$VPY" ] || { echo "NNXGEN_NO_INSTALL=1, but there is no venv at $VENV" >&2; exit 2; }
    echo "== install: skipped (NNXGEN_NO_INSTALL=1)"
else
    install
    echo "== install: $((SECONDS - t0)) s"
fi
"$VPY" -c 'import importlib.metadata as md, sys
print("== versions: Python %d.%d.%d" % sys.version_info[:3],
      *(f"{p} {md.version(p)}" for p in ("jax", "jaxlib", "flax", "kauldron")))'

t1=$SECONDS
rc=0
"$VPY" -m pytest "$@" || rc=$?
echo "== tests ($NNXGEN_STACK, Python $ver): exit $rc in $((SECONDS - t1)) s"
exit $rc
