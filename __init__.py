"""synctalk-parity: SyncTalk_2D models on every runtime, proven stage by stage against the reference."""

import os as _os

# The reference is a yardstick, so its float32 results must not depend on which x86 CPU runs it.
# oneDNN (PyTorch's CPU convolutions) picks kernels by instruction set, and AVX-512 kernels sum in
# another order than AVX2 ones (audio features differ by ~2e-5). Capping oneDNN at AVX2 gives the
# same bits on every AVX2-or-newer CPU and reproduces the golden outputs exactly. It must be set
# before PyTorch runs its first convolution; set ONEDNN_MAX_CPU_ISA yourself to override it.
_os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

__version__ = "0.1.0"
