"""The ``radgpt`` command line: one entry point, commands contributed by each package.

Every command reports bad input as one line ``error: ...`` on stderr with exit code 2,
never a traceback.  Commands import heavy dependencies (torch, the model) lazily so that the
core service installs and starts without the ``local``/``train`` extras.
"""

from __future__ import annotations

import logging
import shutil
import sys
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_exc

__all__ = ["HELP_SETTINGS", "app", "main"]

# Plain (click-style) help: flags show no "<bool>" metavar, and option help is wrapped at
# the terminal's width (120 columns when the output is not a terminal), never cut.
HELP_WIDTH = 120


def _help_settings() -> dict[str, Any]:
    width = shutil.get_terminal_size((HELP_WIDTH, 24)).columns if sys.stdout.isatty() else 0
    return {"max_content_width": max(width, HELP_WIDTH), "terminal_width": width or HELP_WIDTH}


HELP_SETTINGS = _help_settings()

app = typer.Typer(
    name="radgpt",
    help="Draft radiology IMPRESSIONs from HL7 v2 / FHIR R4 reports with a LoRA-tuned model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=HELP_SETTINGS,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version as dist_version

        typer.echo(f"radgpt {dist_version('radgpt')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the radgpt version and exit.",
        ),
    ] = False,
) -> None:
    """Draft radiology IMPRESSIONs from HL7 v2 / FHIR R4 reports with a LoRA-tuned model."""


@app.command()
def version() -> None:
    """Print the radgpt version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("radgpt"))


def _register() -> None:
    from importlib import import_module

    for name in (
        "integration.app.cli_codecs",
        "integration.app.cli_pipeline",
        "integration.app.cli_review",
        "integration.app.cli_inference",
        "training.cli",
    ):
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.register(app)


_register()


def _expected_errors() -> tuple[type[BaseException], ...]:
    from integration.errors import RadgptError

    return (RadgptError, ValueError, OSError)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer.Exit(n) is returned, not raised, here
            sys.exit(rc)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_exc.NoArgsIsHelpError as exc:
        sys.stderr.write(exc.format_message() + "\n")
        sys.exit(2)
    except click_exc.ClickException as exc:
        sys.stderr.write(f"error: {exc.format_message().splitlines()[0]}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except _expected_errors() as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)
    except Exception as exc:  # an internal fault: still one line, details at debug level
        logging.getLogger("radgpt").debug("unexpected error", exc_info=True)
        message = " ".join(str(exc).split())
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {message}\n")
        sys.exit(1)
