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
