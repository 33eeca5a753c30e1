"""The SyncTalk_2D 328 U-Net with its three audio branches (ave, hubert, wenet).

Module names follow the original `unet_328.py` exactly, so real checkpoints load with
`strict=True` (REFERENCE.md section D). The network maps a 6-channel image (real + masked crop,
BGR, /255) and an audio window to a 3-channel BGR mouth in [0, 1].

`width` (the input block's channels, 32 in SyncTalk's network, the default) scales every channel count
of the U-Net and its audio branch together: `width=8` is the same architecture, names and input/output
shapes with 1/4 the channels and about 1/12 the work (the tests' small U-Net for plumbing, never
for fidelity). The interface (6 x 320 x 320 image, the mode's audio window, 3 x 320 x 320 mouth) does
not change with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .shapes import AUDIO_INPUT_SHAPES, AUDIO_MODES, IMAGE_INPUT_SHAPE, OUTPUT_SHAPE  # noqa: F401  (re-exported)

DEFAULT_WIDTH = 32  # SyncTalk's 328 U-Net: input block 32 channels, bottleneck and audio branch 512


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, optional residual."""

    def __init__(self, inp: int, oup: int, stride: int, use_res_connect: bool, expand_ratio: int = 6):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = use_res_connect
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class DoubleConvDW(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        self.double_conv = nn.Sequential(
            InvertedResidual(in_channels, out_channels, stride=stride, use_res_connect=False, expand_ratio=2),
            InvertedResidual(out_channels, out_channels, stride=1, use_res_connect=True, expand_ratio=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class InConvDw(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.inconv = nn.Sequential(
            InvertedResidual(in_channels, out_channels, stride=1, use_res_connect=False, expand_ratio=2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(DoubleConvDW(in_channels, out_channels, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Bilinear x2 (align_corners=True), pad to the skip's size, concat [up, skip], DoubleConvDW."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConvDW(in_channels, out_channels, stride=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        diff_y = x2.shape[2] - x1.shape[2]
        diff_x = x2.shape[3] - x1.shape[3]
        if diff_y or diff_x:  # never taken at 320 x 320; kept for other sizes
            x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x1, x2], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _conv_bn_relu(cin: int, cout: int, stride, padding: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=padding), nn.BatchNorm2d(cout)


class AudioConvWenet(nn.Module):
    """Audio branch for wenet features, input (B, 256, 16, 32); output `16 * width` channels (512)."""

    def __init__(self, width: int = DEFAULT_WIDTH):
        super().__init__()
        self.conv1 = InvertedResidual(256, 256, stride=1, use_res_connect=True, expand_ratio=2)
        self.conv2 = InvertedResidual(256, 256, stride=1, use_res_connect=True, expand_ratio=2)
        self.conv3, self.bn3 = _conv_bn_relu(256, 8 * width, (1, 2), 1)
        self.conv4 = InvertedResidual(8 * width, 8 * width, stride=1, use_res_connect=True, expand_ratio=2)
        self.conv5, self.bn5 = _conv_bn_relu(8 * width, 16 * width, 2, 3)
        self.conv6 = InvertedResidual(16 * width, 16 * width, stride=1, use_res_connect=True, expand_ratio=2)
        self.conv7 = InvertedResidual(16 * width, 16 * width, stride=1, use_res_connect=True, expand_ratio=2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.conv4(x)
        x = self.relu(self.bn5(self.conv5(x)))
        return self.conv7(self.conv6(x))


class AudioConvHubert(nn.Module):
    """Audio branch for hubert features, input (B, 32, 32, 32); output `16 * width` channels (512)."""

    conv3_stride: int | tuple[int, int] = 2

    def __init__(self, width: int = DEFAULT_WIDTH):
        super().__init__()
        self.conv1 = InvertedResidual(32, 2 * width, stride=1, use_res_connect=False, expand_ratio=2)
        self.conv2 = InvertedResidual(2 * width, 4 * width, stride=1, use_res_connect=False, expand_ratio=2)
        self.conv3, self.bn3 = _conv_bn_relu(4 * width, 8 * width, self.conv3_stride, 1)
        self.conv4 = InvertedResidual(8 * width, 8 * width, stride=1, use_res_connect=True, expand_ratio=2)
        self.conv5, self.bn5 = _conv_bn_relu(8 * width, 16 * width, 2, 3)
        self.conv6 = InvertedResidual(16 * width, 16 * width, stride=1, use_res_connect=True, expand_ratio=2)
        self.conv7 = InvertedResidual(16 * width, 16 * width, stride=1, use_res_connect=True, expand_ratio=2)
        self.relu = nn.ReLU()

    forward = AudioConvWenet.forward


class AudioConvAve(AudioConvHubert):
    """Audio branch for the AVE encoder's features, input (B, 32, 16, 16); conv3 keeps the size."""

    conv3_stride = 1


_AUDIO_BRANCHES = {"ave": AudioConvAve, "hubert": AudioConvHubert, "wenet": AudioConvWenet}


def check_width(width: int) -> int:
    """`width` if a U-Net can have it (a positive even channel count: the last blocks halve it), else ValueError."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 2 or width % 2:
        raise ValueError(f"U-Net width must be a positive even number of channels (SyncTalk's is {DEFAULT_WIDTH}), not {width!r}")
    return width


class Model(nn.Module):
    """The 328 U-Net: `forward(image (B,6,320,320), audio (B,*AUDIO_INPUT_SHAPES[mode])) -> (B,3,320,320)`.

    `width`: channels of the input block (SyncTalk's: 32); every later block has the original's multiple of it."""

    def __init__(self, n_channels: int = 6, mode: str = "ave", width: int = DEFAULT_WIDTH):
        super().__init__()
        if mode not in _AUDIO_BRANCHES:
            raise ValueError(f"unknown audio mode {mode!r}; expected one of {', '.join(AUDIO_MODES)}")
        self.n_channels = n_channels
        self.mode = mode
        self.width = check_width(width)
        ch = [width, 2 * width, 4 * width, 8 * width, 16 * width]  # SyncTalk's: 32, 64, 128, 256, 512
        self.audio_model = _AUDIO_BRANCHES[mode](width)
        self.fuse_conv = nn.Sequential(
            DoubleConvDW(ch[4] * 2, ch[4], stride=1),
            DoubleConvDW(ch[4], ch[3], stride=1),
        )
        self.inc = InConvDw(n_channels, ch[0])
        self.down1 = Down(ch[0], ch[0])
        self.down2 = Down(ch[0], ch[1])
        self.down3 = Down(ch[1], ch[2])
        self.down4 = Down(ch[2], ch[3])
        self.down5 = Down(ch[3], ch[4])
        self.up1 = Up(ch[4], ch[3] // 2)
        self.up2 = Up(ch[3], ch[2] // 2)
        self.up3 = Up(ch[2], ch[1] // 2)
        self.up4 = Up(ch[1], ch[0])
        self.up5 = Up(ch[1], ch[0] // 2)
        self.outc = OutConv(ch[0] // 2, 3)

    def forward(self, x: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x6 = self.down5(x5)
        audio = self.audio_model(audio_feat)
        x6 = self.fuse_conv(torch.cat([x6, audio], dim=1))
        x = self.up1(x6, x5)
        x = self.up2(x, x4)
        x = self.up3(x, x3)
        x = self.up4(x, x2)
        x = self.up5(x, x1)
        return torch.sigmoid(self.outc(x))
