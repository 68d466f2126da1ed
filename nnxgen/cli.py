"""Command line: ``nnxgen wrap``. Thin glue over :mod:`nnxgen.generate`."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from nnxgen import __version__


class _Fail(click.ClickException):
    exit_code = 1

    def show(self, file=None) -> None:  # one line, no "Error:" noise from click
        click.echo(f"nnxgen: error: {self.message}", err=True)


def _run(debug: bool, fn):
    """Run ``fn``; known errors become one-line messages (tracebacks with --debug)."""
    from nnxgen.generate import GenerateError
    from nnxgen.inspector import InspectError
    from nnxgen.render import RenderError
    from nnxgen.targets import TargetError

    try:
        return fn()
    except (GenerateError, InspectError, RenderError, TargetError) as err:
        if debug:
            traceback.print_exc()
        raise _Fail(str(err)) from None
    except Exception as err:
        if debug:
            raise
        raise _Fail(
            f"internal error: {type(err).__name__}: {err} (rerun with --debug for a traceback)"
        ) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nnxgen")
def main() -> None:
    """Generate static, typed Flax Linen wrappers for Flax NNX modules."""


@main.command()
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Python file to write (all wrappers go into it).",
)
@click.option("--force", is_flag=True, help="Overwrite a file that nnxgen did not generate.")
@click.option(
    "--templates",
    type=click.Path(file_okay=False, exists=True),
    help="Directory of jinja2 templates that override nnxgen's own.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def wrap(targets: tuple[str, ...], output: str, force: bool, templates: str | None, debug: bool):
    """Write Linen wrappers for TARGETS (package.module:Class, package.module.Class,
    or package.module for every NNX class in it) into OUTPUT."""

    def go():
        from nnxgen import generate

        if not output.endswith(".py"):
            raise generate.GenerateError(f"output {output!r} must be a .py file")
        path = Path(output)
        generate.check_writable(path, force)
        text = generate.generate(list(targets), output, templates)
        changed = generate.write_atomic(path, text)
        n = text.count("\nclass ")
        click.echo(f"nnxgen: {'wrote' if changed else 'unchanged'} {output} ({n} wrapper{'s' * (n != 1)})")

    _run(debug, go)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
