"""The runtime's errors and the version contract with generated files."""

from __future__ import annotations

__all__ = ["RUNTIME_VERSION", "ModeError", "NnxgenError", "check_version"]

#: Version of the contract between generated files and this runtime. Generated
#: files record the version that wrote them and call :func:`check_version`.
#: 1: Linen wrappers of NNX modules (``call``, ``WrapperSpec``); 2: adds NNX
#: wrappers of Linen modules (``linen_init``, ``linen_call``). A generated file
#: records the lowest version it needs.
RUNTIME_VERSION = 2


class NnxgenError(ValueError):
    """A wrapper was used in a way that cannot work; the message says how to fix it."""


class ModeError(NnxgenError):
    """A mode-dependent layer ran without a train/eval mode."""


def check_version(required: int, generated_file: str) -> None:
    """Fail early when ``generated_file`` needs a newer runtime than the installed one."""
    if required > RUNTIME_VERSION:
        raise ImportError(
            f"{generated_file} was generated for nnxgen runtime v{required}, but the "
            f"installed nnxgen runtime is v{RUNTIME_VERSION}: upgrade nnxgen "
            f"(pip install -U nnxgen) or regenerate the file with the installed one."
        )
