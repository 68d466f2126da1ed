"""``python -m nnxgen``: the command line (:mod:`nnxgen.cli`)."""

from nnxgen.cli import main

main()
