"""Private flax detail: eager sharding while a layout is traced.

``layout_variables`` relies on ``nnx.Variable.__init__`` storing the value of
``nnx.using_eager_sharding()`` verbatim as its ``eager_sharding`` metadata and
sharding only when it is truthy, and on ``set_metadata("eager_sharding", v)``
(the two-argument form) replacing it. Check: :func:`check_eager_default`.
Fallback: eager sharding off for the trace, and the layout's variables say
``eager_sharding=False``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["check_eager_default", "eager_default_kept", "layout_variables"]


class _EagerDefault:
    """The ``eager_sharding`` default while a layout is traced: falsy (no variable
    is sharded, so no mesh is needed), and told apart from an explicit False."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<nnxgen: eager_sharding default>"


_EAGER_DEFAULT = _EagerDefault()


@contextlib.contextmanager
def layout_variables() -> Iterator[Callable[[Any], None]]:
    """Variables created in here are not sharded eagerly, so that an abstract
    build of a module with ``out_sharding`` annotations needs no mesh (the
    layout keeps the annotations as metadata; only the values would be
    sharded, and a traced layout discards them).

    Yields ``restore(module)``: gives every variable of ``module`` that took
    the default the ``eager_sharding`` metadata it would have had outside
    (``nnx.using_eager_sharding()`` on entry), so the graph definitions equal
    those of a module built under a mesh. Variables made with an explicit
    ``eager_sharding=`` keep it (and one made with ``eager_sharding=True``
    still needs a mesh, as in NNX).
    """
    default = nnx.using_eager_sharding()
    if not default:  # nothing is sharded eagerly anyway
        yield _keep
        return
    if not eager_default_kept():
        with nnx.use_eager_sharding(False):  # type: ignore[no-untyped-call]
            yield _keep
        return
    with nnx.use_eager_sharding(_EAGER_DEFAULT):  # type: ignore[no-untyped-call]
        yield functools.partial(_restore_eager_sharding, default=default)


def _keep(module: Any) -> None:
    pass


def _restore_eager_sharding(module: Any, default: Any) -> None:
    for _, node in nnx.iter_graph(module):
        if (
            isinstance(node, nnx.Variable)
            and node.get_metadata().get("eager_sharding") is _EAGER_DEFAULT
        ):
            node.set_metadata("eager_sharding", default)


@functools.cache
def eager_default_kept() -> bool:
    try:
        with jax.ensure_compile_time_eval():  # also when first asked in a trace
            return check_eager_default()
    except Exception:  # noqa: BLE001 - any change in the detail means "don't use it"
        return False


def check_eager_default() -> bool:
    def make() -> Any:
        return nnx.Param(jnp.zeros((2, 4)), out_sharding=(None, "nnxgen-no-such-axis"))

    with nnx.use_eager_sharding(_EAGER_DEFAULT):  # type: ignore[no-untyped-call]
        var = make()  # no mesh has that axis: raises if it were sharded
        marked = var.get_metadata().get("eager_sharding") is _EAGER_DEFAULT
        _restore_eager_sharding(var, True)
    with nnx.use_eager_sharding(False):  # type: ignore[no-untyped-call]
        reference = make()
    reference.set_metadata("eager_sharding", True)
    return (
        marked
        and var.get_metadata() == reference.get_metadata()
        and nnx.graphdef(var) == nnx.graphdef(reference)
    )
