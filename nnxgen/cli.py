"""Command line: ``nnxgen wrap``. Thin glue over :mod:`nnxgen.generate`."""

from __future__ import annotations

import difflib
import os
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
    # The generator is imported when a command runs, not at start-up (`--help`,
    # `--version` stay fast without libcst / jinja2): so in each command below.
    from nnxgen.codegen.errors import InspectError, RenderError
    from nnxgen.codegen.targets import TargetError
    from nnxgen.config import ConfigError
    from nnxgen.describe import DescribeError
    from nnxgen.generate import GenerateError

    try:
        return fn()
    except SystemExit:
        raise
    except (
        ConfigError,
        DescribeError,
        GenerateError,
        InspectError,
        RenderError,
        TargetError,
    ) as err:
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


def _jobs(
    targets: tuple[str, ...], output: str | None, *, checking: bool = False
) -> list[tuple[str, list[str], str | None]]:
    """(output path, targets, recorded command) for this run; chdir to the project root
    when the run comes from [tool.nnxgen]."""
    from nnxgen import config, generate  # start-up cost (see _run)

    if targets:
        if output is None:
            raise generate.GenerateError(
                f"give -o OUTPUT.py with targets: nnxgen wrap {' '.join(targets)} "
                "-o OUTPUT.py (or list the output in [tool.nnxgen.outputs] of "
                "pyproject.toml and run nnxgen wrap with no arguments)"
            )
        return [(output, list(targets), None)]
    if output is not None:
        raise generate.GenerateError(
            f"-o {output} needs targets: nnxgen wrap pkg.mod:Class -o {output}"
        )
    cfg = config.load()
    if cfg is None or not cfg.outputs:
        where = config.find_pyproject()
        table = '[tool.nnxgen.outputs] ("out.py" = ["pkg.module:Class"])'
        found = f"in {where}" if where is not None else "(no pyproject.toml found)"
        if checking:
            raise generate.GenerateError(
                f"nothing to check: no files given and no {table} {found}; pass the "
                "generated files (nnxgen check out.py ...) or list them in "
                "[tool.nnxgen.outputs]"
            )
        raise generate.GenerateError(
            f"no targets given and no [tool.nnxgen.outputs] {found}; run nnxgen wrap "
            f"pkg.module:Class -o out.py, or list outputs in {table} and run nnxgen "
            "wrap with no arguments"
        )
    os.chdir(cfg.root)
    return [(o.path, list(o.targets), None) for o in cfg.outputs]


@main.command()
@click.argument("targets", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Python file to write (all wrappers go into it).",
)
@click.option(
    "--force", is_flag=True, help="Overwrite a file that nnxgen did not generate."
)
@click.option(
    "--templates",
    type=click.Path(file_okay=False, exists=True),
    help="Directory of jinja2 templates that override nnxgen's own.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail (and write nothing) when a class of a whole-module target cannot "
    "be wrapped, instead of leaving it out.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def wrap(
    targets: tuple[str, ...],
    output: str | None,
    force: bool,
    templates: str | None,
    strict: bool,
    debug: bool,
):
    """Write Linen wrappers for TARGETS (package.module:Class, package.module.Class,
    or package.module for every NNX class in it) into OUTPUT.

    A class of a whole-module target that cannot be wrapped is left out, named
    with its reason on stderr and in the file's header (--strict: an error).

    With no TARGETS, regenerate every output configured in [tool.nnxgen.outputs]
    of pyproject.toml."""

    def go():
        from nnxgen import generate  # start-up cost (see _run)

        if templates is not None:
            tdir = str(Path(templates).resolve())
        else:
            tdir = None
        jobs = _jobs(targets, output)
        texts = []
        for out, tgts, _ in jobs:
            if not out.endswith(".py"):
                raise generate.GenerateError(f"output {out!r} must be a .py file")
            generate.check_not_source(tgts, out)  # even with --force
            generate.check_writable(Path(out), force)
        for out, tgts, _ in jobs:  # render everything before writing anything
            skipped: list[tuple[str, str]] = []
            texts.append((out, generate.generate(tgts, out, tdir, skipped=skipped)))
            for target, reason in skipped:
                click.echo(
                    f"nnxgen: {'error' if strict else 'skipped'} {target} "
                    f"(in {out}): {reason}",
                    err=True,
                )
            if strict and skipped:
                raise generate.GenerateError(
                    f"{len(skipped)} class(es) of {' '.join(tgts)} cannot be wrapped "
                    "(--strict); nothing written"
                )
        for out, text in texts:
            changed = generate.write_atomic(Path(out), text)
            n = text.count("\nclass ")
            click.echo(
                f"nnxgen: {'wrote' if changed else 'unchanged'} {out} ({n} wrapper{'s' * (n != 1)})"
            )

    _run(debug, go)


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--templates",
    type=click.Path(file_okay=False, exists=True),
    help="Directory of jinja2 templates that override nnxgen's own.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check(files: tuple[str, ...], templates: str | None, debug: bool):
    """Exit 1 with a diff if generated FILES (default: all configured) are stale or missing.

    Given FILES, each is checked against the targets recorded in its own header."""

    def go():
        from nnxgen import generate  # start-up cost (see _run)

        tdir = str(Path(templates).resolve()) if templates is not None else None
        jobs: list[tuple[str, list[str], str | None]] = []
        if files:
            for f in files:
                header = generate.read_header(Path(f))
                if header is None:
                    if not Path(f).exists():
                        raise generate.GenerateError(
                            f"{f} does not exist; generate it with nnxgen wrap"
                        )
                    raise generate.GenerateError(
                        f"{f} has no nnxgen header (not generated by nnxgen); nothing to check against"
                    )
                tgts, command = header
                jobs.append((f, tgts, command))
        else:
            jobs = _jobs((), None, checking=True)
        stale = 0
        for out, tgts, command in jobs:
            recorded_out = out
            if command is not None:
                parts = command.split()
                if "-o" in parts:
                    recorded_out = parts[parts.index("-o") + 1]
            expected = generate.generate(tgts, recorded_out, tdir, location=out)
            path = Path(out)
            try:
                current = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                current = None
            if current == expected:
                continue
            stale += 1
            if current is None:
                click.echo(
                    f"nnxgen: {out} is missing; run: {generate.command_for(tgts, recorded_out)}"
                )
                continue
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                f"a/{out}",
                f"b/{out}",
            )
            click.echo("".join(diff), nl=False)
            click.echo(
                f"nnxgen: {out} is stale; run: {generate.command_for(tgts, recorded_out)}"
            )
        if stale:
            click.echo(
                f"nnxgen: {stale} of {len(jobs)} generated file(s) out of date",
                err=True,
            )
            raise SystemExit(1)
        click.echo(f"nnxgen: {len(jobs)} generated file(s) up to date")

    _run(debug, go)


@main.command("inspect")
@click.argument("target")
@click.option(
    "-a",
    "--arg",
    "args",
    multiple=True,
    help="Constructor argument NAME=VALUE (for the state).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def inspect_cmd(target: str, args: tuple[str, ...], as_json: bool, debug: bool):
    """Show what nnxgen sees in TARGET: fields, methods, and (with --arg) the state
    collections with shapes from an abstract init."""

    def go():
        from nnxgen import describe  # start-up cost (see _run)

        data = describe.describe(target, describe.parse_args(args))
        click.echo(describe.as_json(data) if as_json else describe.as_text(data))

    _run(debug, go)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
