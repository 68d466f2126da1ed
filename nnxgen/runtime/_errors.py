"""The runtime's errors and the version contract with generated files."""

from __future__ import annotations

from flax.errors import FlaxError, ModifyScopeVariableError

__all__ = [
    "RUNTIME_VERSION",
    "ImmutableCollectionError",
    "ModeError",
    "NnxgenError",
    "check_version",
]

#: Version of the contract between generated files and this runtime. Generated
#: files record the version that wrote them and call :func:`check_version`.
#: 1: Linen wrappers of NNX modules (``call``, ``WrapperSpec``); 2: adds NNX
#: wrappers of Linen modules (``linen_init``, ``linen_call``); 3: their
#: ``__init__`` checks freshness before building the Linen module
#: (``linen_check_fresh``). A generated file records the lowest version it needs.
RUNTIME_VERSION = 3


class NnxgenError(ValueError):
    """A wrapper was used in a way that cannot work; the message says how to fix it."""


class ModeError(NnxgenError):
    """A mode-dependent layer ran without a train/eval mode."""


_FLAX_ERRORS = "https://flax.readthedocs.io/en/latest/api_reference/flax.errors.html"


class ImmutableCollectionError(ModifyScopeVariableError, NnxgenError):
    """The NNX method wrote a variable of a collection the caller did not make mutable.

    A :class:`flax.errors.ModifyScopeVariableError`, as plain Linen raises for
    the same write, with the variable's path, the method and the fix.
    """

    def __init__(self, cls_name: str, method: str, col: str, var: str) -> None:
        FlaxError.__init__(  # type: ignore[no-untyped-call]
            self,
            f'Cannot update variable "{var}" of {cls_name} because collection '
            f'"{col}" is immutable: {cls_name}.{method} writes it. Pass '
            f'mutable=["{col}"] to apply and keep the returned updates, e.g. '
            f'y, updates = model.apply(variables, ..., mutable=["{col}"]); or run '
            f"it in a mode that does not write it (train=False for batch statistics). "
            f"({_FLAX_ERRORS}#flax.errors.ModifyScopeVariableError)",
        )


def check_version(required: int, generated_file: str) -> None:
    """Fail early when ``generated_file`` needs a newer runtime than the installed one."""
    if required > RUNTIME_VERSION:
        raise ImportError(
            f"{generated_file} was generated for nnxgen runtime v{required}, but the "
            f"installed nnxgen runtime is v{RUNTIME_VERSION}: upgrade nnxgen "
            f"(pip install -U nnxgen) or regenerate the file with the installed one."
        )
