"""reference/execution.py: the faster reference traces the U-Net, and tracing's warnings never reach the terminal,
whatever another thread does with the warnings filters meanwhile."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The reference's thread traces the U-Net while another thread's `warnings.catch_warnings` scope (an image reader's, an
# export's) ends mid-trace: a forward pre-hook pauses the trace until that scope has ended. "command": the filters set
# first, as every command sets them at its start (cli/app.py); "library": only as importing the module sets them.
RACE = """
import sys, threading, warnings
import numpy as np
import torch
from synctalk_parity.models import load_unet
from synctalk_parity.reference.execution import quiet_tracing, unet_runner
if sys.argv[2] == "command":
    quiet_tracing()
unet = load_unet(sys.argv[1])
entered, tracing, left = threading.Event(), threading.Event(), threading.Event()

def other_thread():
    with warnings.catch_warnings():
        entered.set()
        tracing.wait()
    left.set()

def pause_mid_trace(module, args):
    if torch.jit.is_tracing() and not tracing.is_set():
        tracing.set()
        left.wait()

other = threading.Thread(target=other_thread)
other.start()
entered.wait()
unet.register_forward_pre_hook(pause_mid_trace)
output = unet_runner(unet, "fast")(np.zeros((1, 6, 320, 320), np.float32), np.zeros((1, 32, 16, 16), np.float32))
other.join()
assert left.is_set() and output.shape == (1, 3, 320, 320)
print("traced")
"""


@pytest.mark.parametrize("caller", ["command", "library"])
def test_tracing_warnings_stay_quiet_when_another_threads_warnings_scope_ends_mid_trace(small_weights, caller):
    """Measured on the code before: the TracerWarning of `models/unet.py` reached stderr here, every time."""
    done = subprocess.run([sys.executable, "-c", RACE, str(small_weights[0]), caller], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "traced", done.stderr
    assert "Warning" not in done.stderr and "deprecated" not in done.stderr, done.stderr
