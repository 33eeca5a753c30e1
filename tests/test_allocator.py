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
