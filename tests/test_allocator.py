"""The allocator setting every command makes (`allocator.py`): a large array's memory, once freed, is reused by the
next one instead of being unmapped and faulted in again page by page."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from synctalk_parity.allocator import tune_allocator

# 64 MiB arrays (above glibc's own largest mmap threshold, 32 MiB), made and freed 5 times; page faults of the last 4
PROBE = """
import json, resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from synctalk_parity.allocator import tune_allocator
    assert tune_allocator()
np.ones(2**24, np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    np.ones(2**24, np.float32).sum()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_freed_large_array_is_reused_without_new_pages():
    default, tuned = _faults("default"), _faults("tuned")
    assert default >= 4 * 32, default  # each 64 MiB array faulted in again: at least once per 2 MiB (transparent huge pages)
    assert tuned < default / 10, (tuned, default)  # measured here: 1 against 2177


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_glibc_takes_the_thresholds():
    assert tune_allocator() is True  # every mallopt call accepted (this process's conftest made the call first)


# 128 MiB arrays made and freed on a thread of their own (as the pipeline's U-Net calls and the reference's thread do):
# page faults of the last 4
THREAD_PROBE = """
import json, resource, sys, threading
import numpy as np
if sys.argv[1] == "tuned":
    from synctalk_parity.allocator import tune_allocator
    assert tune_allocator()
faults = []
def work():
    np.ones(2**25, np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        np.ones(2**25, np.float32).sum()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=work)
thread.start()
thread.join()
print(json.dumps(faults[0]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_thread_reuses_a_freed_array_larger_than_a_thread_arena():
    """glibc gives a thread an arena of 64 MiB heaps; a larger block was an mmap of its own, faulted in again every time,
    whatever the thresholds (measured: 261 faults against 1). With one arena, the thread reuses the main heap."""
    default, tuned = (json.loads(subprocess.run([sys.executable, "-c", THREAD_PROBE, mode], capture_output=True, text=True,
                                                check=True).stdout) for mode in ("default", "tuned"))
    assert default >= 4 * 64, default  # each 128 MiB array faulted in again: at least once per 2 MiB
    assert tuned < default / 10, (tuned, default)
