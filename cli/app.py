"""The `parity` app: one typer app whose every command turns a `ParityError` into one line and its exit code.

User errors (`ParityError`) print one line and exit with their code (2 for bad input, 1 for a
failed gate); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from .. import __version__
from ..errors import ParityError
from .view import console, err_console


def user_errors(command):
    """Turn a `ParityError` into one red line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ParityError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


class ParityTyper(typer.Typer):
    """A Typer whose every command turns a `ParityError` into one line and its exit code."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda callback: register(user_errors(callback))


app = ParityTyper(
    name="parity",
    help="SyncTalk_2D on every runtime, proven stage by stage against the PyTorch reference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"synctalk-parity {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = None,
) -> None:
    """SyncTalk_2D on every runtime, proven stage by stage against the PyTorch reference."""


def _register_commands() -> None:
    from . import bench, bundle, compare, doctor, export, report, run

    for module in (run, export, doctor, compare, bench, report, bundle):
        module.register(app)


_register_commands()


def main() -> None:
    app()
