"""``nnxgen inspect``: what the inspector sees, for debugging before generating."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from typing import Any

from nnxgen.codegen import targets
from nnxgen.codegen.names import is_linen_class, register_path
from nnxgen.codegen.spec import MethodSpec, ParamSpec
from nnxgen.runtime._linen_wrapper.spec import rngs_param
from nnxgen.to_linen.inspect import inspect_class
from nnxgen.to_nnx.inspect import inspect_linen_class


class DescribeError(ValueError):
    pass


def parse_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; VALUE is a Python literal (or a bare string)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise DescribeError(
                f"bad --arg {pair!r}: write it as NAME=VALUE, e.g. --arg din=3"
            )
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value
    return out


def abstract_state(cls: type, args: dict[str, Any]) -> list[dict[str, Any]]:
    """State of ``cls(**args)`` from an abstract init (no memory is allocated)."""
    # start-up cost: jax and the runtime, only for `nnxgen inspect --arg`
    import jax
    from flax import nnx

    from nnxgen import runtime

    rows: list[dict[str, Any]] = []

    def build(key: Any) -> tuple:
        with runtime._missing_streams(None, strict=False):
            kwargs = dict(args)
            rngs_name = _rngs_param(cls)
            if rngs_name:
                kwargs[rngs_name] = runtime._Rngs(params=key)
            module = cls(**kwargs)
        for path, var in nnx.to_flat_state(nnx.state(module)):
            if isinstance(var, (nnx.RngKey, nnx.RngCount)):
                continue
            value = var.get_value() if isinstance(var, nnx.Variable) else var
            rows.append(
                {
                    "collection": runtime._collection_of(type(var)),
                    "path": "/".join(map(str, path)),
                    "shape": list(value.shape),
                    "dtype": str(value.dtype),
                }
            )
        return ()

    jax.eval_shape(build, jax.random.key(0))
    return sorted(rows, key=lambda r: (r["collection"], r["path"]))


def _rngs_param(cls: type) -> str | None:
    return rngs_param(list(inspect.signature(cls.__init__).parameters.values())[1:])


def _param(p: ParamSpec) -> dict[str, Any]:
    d = {
        "name": p.name,
        "kind": p.kind,
        "annotation": p.annotation,
        "default": p.default,
    }
    if p.field != p.name and p.field:
        d["field"] = p.field
    if p.default_comment:
        d["note"] = p.default_comment
    return d


def _method(
    m: MethodSpec, renamed: tuple[tuple[str, str], ...], default_why: str
) -> dict[str, Any]:
    d = {
        "name": m.name,
        "wrapper_name": m.wrapper_name,
        "params": [_param(p) for p in m.params],
        "returns": m.returns,
        "takes_rngs": m.takes_rngs,
        "train_param": m.train_param,
    }
    if m.wrapper_name != m.name:
        # the reason the class comment gives ("features_ (a constructor ...)")
        text = dict(renamed).get(m.name, "")
        why = text.removeprefix(m.wrapper_name).strip().removeprefix("(")
        d["renamed_because"] = why.removesuffix(")") or default_why
    return d


def describe(target: str, args: dict[str, Any]) -> dict[str, Any]:
    resolved = targets.resolve(target)
    out = []
    for t in resolved:
        register_path(t.cls, t.module, t.path)
        if is_linen_class(t.cls):
            out.append(_describe_linen(t))
            continue
        spec, imports = inspect_class(t.cls, target=t.text, wrapper_name=t.wrapper_name)
        entry: dict[str, Any] = {
            "target": t.text,
            "wrapper": spec.name,
            "nnx_class": f"{t.cls.__module__}.{t.cls.__qualname__}",
            "fields": [_param(p) for p in spec.params],
            "extra_fields": [dataclasses.asdict(f) for f in spec.extra_fields],
            "takes_rngs": spec.takes_rngs,
            "methods": [
                _method(m, spec.renamed, "a name of Linen's own") for m in spec.methods
            ],
            "imports": sorted(i.statement() for i in imports),
        }
        required = [
            p.name
            for p in spec.params
            if p.default is None and p.kind != "VAR_POSITIONAL"
        ]
        missing = [n for n in required if n not in args]
        if missing:
            entry["state"] = None
            entry["state_note"] = (
                "pass " + " ".join(f"--arg {n}=..." for n in missing) + " to see it"
            )
        else:
            try:
                entry["state"] = abstract_state(t.cls, {k: v for k, v in args.items()})
            except Exception as err:  # noqa: BLE001 - the user's constructor rejected the arguments
                entry["state"] = None
                entry["state_note"] = (
                    f"abstract init failed: {type(err).__name__}: {err}"
                )
        out.append(entry)
    return {"classes": out}


def _describe_linen(t: targets.Target) -> dict[str, Any]:
    spec, imports = inspect_linen_class(
        t.cls, target=t.text, wrapper_name=t.wrapper_name
    )
    return {
        "target": t.text,
        "wrapper": spec.name,
        "direction": "linen->nnx",
        "linen_class": f"{t.cls.__module__}.{t.cls.__qualname__}",
        "fields": [_param(p) for p in spec.fields],
        "extra_fields": [],
        "takes_rngs": True,
        "methods": [
            {
                **_method(m, spec.renamed, "a name of nnx.Module's own"),
                "modes": list(modes),
            }
            for m, modes in zip(spec.methods, spec.modes, strict=True)
        ],
        "imports": sorted(i.statement() for i in imports),
        "state": None,
        "state_note": (
            "a Linen module makes its variables on its first call: see them with "
            "nnx.bridge.lazy_init(model, x) and nnx.state(model)"
        ),
    }


def as_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def as_text(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for c in data["classes"]:
        source = c.get("nnx_class") or c["linen_class"]
        lines.append(f"{c['wrapper']}  <-  {c['target']}  ({source})")
        lines.append("  fields:")
        for f in c["fields"] + c["extra_fields"]:
            text = f"    {f.get('field', f['name'])}: {f['annotation']}"
            if f.get("default") is not None:
                text += f" = {f['default']}"
            lines.append(text)
        lines.append("  methods:")
        for m in c["methods"]:
            params = ", ".join(p["name"] for p in m["params"])
            ret = f" -> {m['returns']}" if m["returns"] else ""
            text = f"    {m['wrapper_name']}({params}){ret}"
            if m["wrapper_name"] != m["name"]:
                text += f"  [runs {m['name']}: {m['renamed_because']}]"
            lines.append(text)
        lines.append("  state:")
        if c["state"] is None:
            lines.append(f"    ({c['state_note']})")
        else:
            for r in c["state"]:
                lines.append(
                    f"    {r['collection']}/{r['path']}: {tuple(r['shape'])} {r['dtype']}"
                )
    return "\n".join(lines)
