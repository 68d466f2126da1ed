"""Building the NNX module a wrapper stands for (at init, and traced for layouts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import linen as nn
from flax import nnx

from nnxgen.runtime import _compat
from nnxgen.runtime._linen_wrapper.rngs import Rngs
from nnxgen.runtime._linen_wrapper.spec import WrapperSpec, is_wrapper
from nnxgen.runtime._streams import missing_streams


def build_nnx(value: Any, rngs: nnx.Rngs | None, *, field_path: str = "") -> Any:
    """Turn a wrapper (or containers of wrappers) into live NNX modules."""
    if is_wrapper(value):
        spec: WrapperSpec = type(value).__nnxgen__
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in spec.params:
            v = build_nnx(getattr(value, p.field), rngs)
            if p.kind == "POSITIONAL_ONLY":
                args.append(v)
            elif p.kind == "VAR_POSITIONAL":
                args.extend(v)
            elif p.kind == "VAR_KEYWORD":
                kwargs.update(v)
            else:
                kwargs[p.name] = v
        if spec.takes_rngs:
            name = spec.takes_rngs if isinstance(spec.takes_rngs, str) else "rngs"
            kwargs[name] = rngs
        return spec.nnx_class(*args, **kwargs)
    if isinstance(value, (list, tuple)):
        return type(value)(build_nnx(v, rngs) for v in value)
    if isinstance(value, Mapping) and any(is_wrapper(v) for v in value.values()):
        return {k: build_nnx(v, rngs) for k, v in value.items()}
    return value


def init_base(keys: Mapping[str, jax.Array]) -> jax.Array | None:
    if "params" in keys:
        return keys["params"]
    if keys:
        return keys[min(keys)]
    return None


def construct(wrapper: nn.Module, keys: Mapping[str, jax.Array]) -> Any:
    """Build the NNX module, deriving missing streams from the first key."""
    with missing_streams(init_base(keys), strict=False), _compat.outside_linen():
        return build_nnx(wrapper, Rngs(**keys))
