"""The generator's parts both directions share: targets, source reading,
expressions, names, parameters, members, signatures, imports, templates,
layout and ruff. Nothing here imports :mod:`nnxgen.to_linen` or
:mod:`nnxgen.to_nnx`."""
