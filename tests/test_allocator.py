"""The allocator setting every command makes (`allocator.py`): a large array's memory, once freed, is reused by the
next one instead of being unmapped and faulted in again page by page."""

from __future__ import annotations

import json
import os
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


def _faults(mode: str, probe: str = PROBE, env: dict[str, str] | None = None) -> int:
    out = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_freed_large_array_is_reused_without_new_pages():
    default, tuned = _faults("default"), _faults("tuned")
    assert default >= 4 * 32, default  # each 64 MiB array faulted in again: at least once per 2 MiB (transparent huge pages)
    assert tuned < default / 10, (tuned, default)  # measured here: 1 against 2177


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_glibc_takes_the_thresholds():
    assert tune_allocator() is True  # every mallopt call accepted (this process's conftest made the call first)


# a pass that grows the heap by 1200 MiB (six 200 MiB arrays held at once, each under the mmap threshold) and frees it,
# 3 times after a first; page faults of the last 3. "1GiB" sets the trim threshold this module had before 2026-12-06.
TRIM_PROBE = """
import ctypes, json, resource, sys
import numpy as np
from synctalk_parity.allocator import M_TRIM_THRESHOLD, tune_allocator
assert tune_allocator()
if sys.argv[1] == "1GiB":
    assert ctypes.CDLL(None).mallopt(M_TRIM_THRESHOLD, 2**30) == 1
def one_pass():
    held = [np.ones(50 * 2**20, np.float32) for _ in range(6)]
    return sum(float(a[0]) for a in held)
one_pass()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    one_pass()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_heap_that_grew_past_a_gibibyte_in_one_pass_is_reused_by_the_next():
    """A U-Net pass on a batch of 4 in PyTorch (the demo weights' fit) grows the heap by about 1 GiB and frees it: with the
    trim threshold at 1 GiB glibc gave it back and every pass faulted it in again (230,000 faults a pass)."""
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}  # 4 KiB pages: a fault per page, so the counts are plain
    before, now = _faults("1GiB", TRIM_PROBE, env), _faults("tuned", TRIM_PROBE, env)
    assert before >= 3 * 100_000, before  # given back and faulted in again (measured here: 718,848 for 3 passes)
    assert now < before / 100, (now, before)  # measured here: 0
