"""The SyncTalk_2D audio encoder: a (B, 1, 80, 16) mel window to a (B, 512) feature.

Module names follow the original `utils.py` (`audio_encoder.N.conv_block.{0,1}`); the released
checkpoint `audio_visual_encoder.pth` stores the inner Sequential's keys without the
`audio_encoder.` prefix (see `models.checkpoints`).
"""

from __future__ import annotations

import torch
from torch import nn

from .shapes import FEATURE_SIZE, WINDOW_SHAPE  # noqa: F401  (re-exported)

# (cin, cout, kernel, stride, padding, residual) for the 13 blocks of REFERENCE.md section D.
BLOCKS: tuple[tuple[int, int, int, int | tuple[int, int], int, bool], ...] = (
    (1, 32, 3, 1, 1, False),
    (32, 32, 3, 1, 1, True),
    (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
)


class Conv2d(nn.Module):
    """Conv + BatchNorm, optional residual, then ReLU (the original's `Conv2d` block)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride, padding: int, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class AudioEncoder(nn.Module):
    """`forward(mel_windows (B, 1, 80, 16)) -> (B, 512)`."""

    def __init__(self):
        super().__init__()
        self.audio_encoder = nn.Sequential(*(Conv2d(*block) for block in BLOCKS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.audio_encoder(x)
        return out.squeeze(2).squeeze(2)
