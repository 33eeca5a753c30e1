"""Fixture weights that need no download: reproducible from a seed.

They are an untrained network's weights (seeded initialisation) with BatchNorm statistics
perturbed from the seed too, so every layer is exercised. An untrained U-Net's output is nearly
constant: for anything that measures precision use the golden fixture weights in
`shared/golden/weights/` (trained-like), loaded as real checkpoints are.
"""

from __future__ import annotations

import torch
from torch import nn

from .audio_encoder import AudioEncoder
from .unet import DEFAULT_WIDTH, Model


def fixture_unet(seed: int = 0, mode: str = "ave", width: int = DEFAULT_WIDTH) -> Model:
    """A U-Net with seeded weights, in eval mode (`width` < 32: the small U-Net of the plumbing tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Model(6, mode, width)
        _perturb_batchnorm(model)
    return model.eval()


def fixture_audio_encoder(seed: int = 0) -> AudioEncoder:
    """An audio encoder with seeded weights, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = AudioEncoder()
        _perturb_batchnorm(model)
    return model.eval()


def _perturb_batchnorm(model: nn.Module) -> None:
    """Give BatchNorm layers non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
                module.running_mean.uniform_(-0.1, 0.1)  # type: ignore[union-attr]  # track_running_stats is on
                module.running_var.uniform_(0.8, 1.2)  # type: ignore[union-attr]
