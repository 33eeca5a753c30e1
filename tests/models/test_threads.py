"""`torch_threads`: PyTorch's thread count for a block, restored after it (the listening weights are made on one
thread; a matrix cell's timed block gets every CPU), and no torch import in a process that has not loaded it."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_count_holds_inside_the_block_and_is_restored_after_it_even_on_an_error():
    import torch

    from synctalk_parity.models.threads import torch_threads

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_it_does_not_import_torch():
    code = ("import sys\nfrom synctalk_parity.models.threads import torch_threads\n"
            "with torch_threads(1):\n    pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
