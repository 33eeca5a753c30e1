"""All-or-nothing outputs: nothing half-written is ever left looking complete.

    with building(out / "onnx-fp32") as tmp:     # a fresh `onnx-fp32.partial/`
        ...write into tmp...                      # an exception removes it; success replaces `onnx-fp32/`
    write_text_atomically(out / "result.json", text)

Streaming writers (the dump, the video, the frames folder of a run) follow the same rule with their
own `.partial` names, since they are filled over a whole run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial"


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield an empty `<final>.partial` folder; it replaces `final` when the block succeeds and is removed
    when the block raises (a block may also move it elsewhere itself before raising)."""
    final = Path(final)
    tmp = final.with_name(final.name + PARTIAL)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `<path>.partial`, then rename it to `path`."""
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
