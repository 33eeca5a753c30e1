"""All-or-nothing outputs: nothing half-written is ever left looking complete.

    with building(out / "onnx-fp32") as tmp:     # a fresh, uniquely named `.onnx-fp32.<random>.partial/`
        ...write into tmp...                      # an exception removes it; success replaces `onnx-fp32/`
    with writing(path) as tmp:                    # the same for one file: `torch.save(model, tmp)`
        ...
    write_text_atomically(out / "result.json", text)

Temporary names are unique and carry the writer's process id (several processes may build the same
target at once: the last one to finish wins, and no one deletes another's work in progress; a folder
left by a killed process is removed by the next build of the same target). They sit beside the
target, so the final rename stays on one file system, and they end in `.partial`, so nothing reads
them as done.

A Ctrl-C stops a publish even when some library swallowed its KeyboardInterrupt (C code that clears the
error it meets while importing, say): the CLI's SIGINT handler (`arm_interrupts`) records it, and every
publish here checks the record first (`stop_if_interrupted`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial"
_interrupt = {"seen": False}


def _on_sigint(signum, frame) -> None:
    _interrupt["seen"] = True
    raise KeyboardInterrupt


def arm_interrupts() -> None:
    """Record Ctrl-C (SIGINT) from now on, then raise KeyboardInterrupt as Python does; forget an earlier one. Only the
    main thread can set a signal handler: elsewhere this does nothing."""
    import signal
    import threading

    _interrupt["seen"] = False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def interrupt_handled() -> None:
    """Forget a recorded SIGINT: for a caller that deliberately writes what it has after a Ctrl-C (the matrix's
    report, marked incomplete) and exits 130 itself."""
    _interrupt["seen"] = False


def stop_if_interrupted() -> None:
    """KeyboardInterrupt if a SIGINT was recorded: nothing is published after a Ctrl-C, whoever caught its exception."""
    if _interrupt["seen"]:
        raise KeyboardInterrupt


@contextmanager
def building(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; it replaces `final` when the block succeeds and is
    removed when the block raises (a block may also move it elsewhere itself before raising)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=PARTIAL, dir=final.parent))
    try:
        yield tmp
        stop_if_interrupted()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, final)


def remove_abandoned(final: Path) -> list[Path]:
    """Remove temporary folders of `final` left by processes that no longer run (killed mid-write); returns them."""
    removed = []
    for leftover in final.parent.glob(f".{glob.escape(final.name)}.*{PARTIAL}"):
        owner = leftover.name[len(final.name) + 2:].split(".", 1)[0]
        if owner.isdigit() and not _running(int(owner)):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def replace_folder(source: Path, final: Path) -> None:
    """Rename folder `source` to `final`, moving an existing `final` aside first and deleting it after."""
    for _ in range(8):
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                final.rename(old / final.name)
        try:
            source.rename(final)
        except OSError:  # another process put its own `final` there in between: try again
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            continue
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return
    shutil.rmtree(source, ignore_errors=True)
    raise OSError(f"{final}: could not be replaced (other processes kept writing it)")


@contextmanager
def writing(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `final`; it replaces `final` when the block succeeds and is
    removed when the block raises."""
    final = Path(final)
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=PARTIAL, dir=final.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        stop_if_interrupted()
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8, `\\n` line ends) to a temporary file beside `path`, then rename it to `path`."""
    with writing(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as stream:
        stream.write(text)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it to `path`."""
    with writing(path) as tmp:
        tmp.write_bytes(data)
