"""The `parity` app: one typer app whose every command ends with an exit code CI can act on.

    0  every gate passes (or the command has no gate)
    1  a gate fails: the candidate does not make the reference's output
    2  a usage or input error: one line names the file, frame or option and what to do
    3  an internal error (a bug): one line points to the traceback, written to parity-error.log in the
       command's output folder (else the working folder); `parity --debug ...` prints it instead
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import functools
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from ..errors import ParityError
from .view import console, err_console

INTERNAL_ERROR = 3
INTERRUPTED = 130
ERROR_LOG = "parity-error.log"
EXIT_CODES = ("Exit codes: 0 every gate passes; 1 a gate fails; 2 a usage or input error; 3 an internal error "
              f"(traceback in {ERROR_LOG}, or on stderr with --debug); 130 interrupted.")
_debug = {"on": False}
# typer's own exits and usage errors (typer >= 0.2x defines its own; older typer re-exports click's)
_PASS_THROUGH: tuple[type[BaseException], ...] = tuple(t for t in (typer.Exit, typer.Abort, getattr(typer, "TyperException", None), getattr(typer, "BadParameter", None))
                      if isinstance(t, type) and issubclass(t, BaseException))


def user_errors(command):
    """A `ParityError` becomes one red line and its exit code; an interruption exits 130; anything else is a bug:
    its traceback goes to a log file (or stderr with --debug) and the exit code is 3."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from ..allocator import tune_allocator
        from ..atomic import arm_interrupts
        from ..reference.execution import quiet_tracing

        arm_interrupts()  # a Ctrl-C that a library swallows still stops the command before it publishes anything
        tune_allocator()  # large arrays reuse the heap instead of new pages a frame (allocator.py)
        quiet_tracing()  # before any thread: the reference's tracing warnings stay quiet whatever other threads do
        try:
            return command(*args, **kwargs)
        except ParityError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except _PASS_THROUGH:
            raise
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: nothing half-written was left in place", highlight=False)
            raise typer.Exit(INTERRUPTED) from None
        except Exception as exc:
            if _debug["on"]:
                traceback.print_exc()
                raise typer.Exit(INTERNAL_ERROR) from None
            log = _write_error_log(kwargs.get("out"), command.__name__)
            err_console.print(f"[bold red]internal error[/] ({type(exc).__name__}: {exc}); this is a bug, not your input. "
                              f"Traceback: {log}", highlight=False, soft_wrap=True)
            raise typer.Exit(INTERNAL_ERROR) from None

    return wrapper


def _write_error_log(out: object, command: str) -> Path:
    """The traceback of the exception being handled, in the command's output folder when it has one."""
    folder = Path(out) if isinstance(out, (str, Path)) else Path.cwd()
    if folder.suffix and not folder.is_dir():  # --out names a file (a report), not a folder
        folder = folder.parent
    text = f"parity {command}, {datetime.now(UTC).isoformat(timespec='seconds')}, synctalk-parity {__version__}\n\n"
    text += traceback.format_exc()
    for place in (folder, Path.cwd()):
        try:
            place.mkdir(parents=True, exist_ok=True)
            (place / ERROR_LOG).write_text(text)
            return place / ERROR_LOG
        except OSError:
            continue
    return Path("(could not be written)")


def _flags_without_type_hints() -> None:
    """typer's rich help (0.2x) prints a `<bool>` type beside every flag (`--overwrite <bool>`, even `--help`),
    where its plain help prints none; a flag takes no value, so show none."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if option is None or original is None or getattr(original, "_parity_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) or getattr(self, "count", False) else original(self, ctx)

    display_type_rich._parity_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flags_without_type_hints()


class ParityTyper(typer.Typer):
    """A Typer whose every command maps its outcome to the exit codes above."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda callback: register(user_errors(callback))


app = ParityTyper(
    name="parity",
    help="SyncTalk_2D on every runtime, proven stage by stage against the PyTorch reference.",
    epilog=EXIT_CODES,
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
    debug: Annotated[bool, typer.Option("--debug", help="On an internal error, print the traceback instead of writing it to parity-error.log.")] = False,
) -> None:
    """SyncTalk_2D on every runtime, proven stage by stage against the PyTorch reference."""
    _debug["on"] = debug


def _register_commands() -> None:
    from . import bench, bundle, cache, compare, doctor, export, locate, matrix, report, run, weights

    for module in (run, export, doctor, compare, locate, bench, matrix, report, bundle, weights, cache):
        module.register(app)


_register_commands()


def main() -> None:
    app()
