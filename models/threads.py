"""PyTorch's thread count for a block, restored after it, without importing torch into a process that has not."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """PyTorch computes on `count` threads inside the block and on as many as before after it. Nothing changes when
    `count` is None or 0, or when torch is not imported (a process that never loaded it is not made to)."""
    torch = sys.modules.get("torch")
    if torch is None or not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
