"""The C allocator set up for large arrays, once per process (glibc only; elsewhere nothing is changed).

PyTorch and numpy take their arrays from malloc. glibc serves a block from 128 KiB up (a threshold it raises with use,
to 32 MiB at most) with an mmap of its own and unmaps it when freed, so each U-Net activation (13-26 MB a frame at
320 x 320) is new memory that the kernel maps and zeroes again, frame after frame. With the thresholds below, blocks
up to 256 MiB come from the heap and freed memory stays there for the next frame.

Measured on the 2-core development machine (Intel Xeon, glibc 2.36), whole processes, alternated:
- the U-Net emulated in bf16 and fp16 (`reference/execution.py`), 12 frames on one thread: system CPU 0.35 s against
  2.94 s, wall 0.74x;
- making the demo weights (AVX-512 AMD EPYC VM), the trim threshold at 2 GiB against 1 GiB: system CPU 1.2-1.4 s
  against 4.0-4.3 s, wall 0.90x;
- more figures in docs/performance.md ("The allocator").

The cost: memory a process freed is not given back to the kernel while it runs (up to the trim threshold), so its
resident size stays at its peak rather than falling after it.
"""

from __future__ import annotations

import ctypes
import functools
import os

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 256 * 2**20  # blocks below this come from the heap, not from an mmap of their own
# free memory at the heap's top kept for reuse up to this: the most whole MiB mallopt's int holds. At 1 GiB, a U-Net pass
# on a batch of 4 in PyTorch (the demo weights' fit) freed ~1 GiB at the top after each pass, glibc gave it back, and the
# next pass faulted it in again (docs/performance.md, "The allocator")
TRIM_THRESHOLD = 2047 * 2**20
TOP_PAD = 64 * 2**20  # the heap grows by at least this much at a time


@functools.cache
def tune_allocator() -> bool:
    """Set glibc's malloc thresholds for large arrays (module docstring), once per process; True where they were set."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # glibc only (musl and macOS have no such name, or no mallopt)
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, ValueError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                                                               (M_TOP_PAD, TOP_PAD)))
