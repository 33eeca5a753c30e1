"""Listening weights: a U-Net and audio encoder whose mouth opens and closes with the speech, for any dataset.

Weights for tests and demos, not a SyncTalk model. Every set of weights the toolkit had before was deaf (the golden
fixture's mouth boxes from speech and from silence are 58 dB PSNR apart), so a port that mangles the audio path made
the same frames as a correct one. With these, the U-Net reproduces the avatar's real crop and opens a dark mouth
between the template's lips, as high as the speech around the frame is loud: the audio path shows in every frame.

They are built, not trained: the layers the mouth needs get constructed weights on a few designated channels of
every tensor (the first ones), and one small network, the mouth locator, is fit by Adam; every other channel keeps
the seeded fixture weights (`models/fixtures.py`) with BatchNorm statistics recalibrated on the avatar, and takes
no part in the mouth (no seeded channel reads a designated one, and no designated channel reads a seeded one).

**Audio encoder** (mel window `(1, 80, 16)` to 512 features). Designated channel 0 carries `mel + 4` through the 13
blocks: blocks 3, 6 and 9 average it over frequency and time as they stride, so block 10 holds 3 bands (mel bins
0-13, 14-40 and 41-67: about 55-600, 600-1800 and 1800-4900 Hz) x 3 time cells; block 11 reads the centre cell
(mel frames 5-10 of 16, the window's middle 75 ms) into the loudness `E = (0.3 low + 0.5 mid + 0.2 high) / 8`, in
[0, 1] (silence: 0), and the spectral shape `S = (mid - low) / 8 + 1`, in [0, 2] (low for the closed-mouth sounds
whose energy sits below 600 Hz, such as m and n; high for open vowels). Block 12 writes `E` into features 0-255 and
`S` into 256-511, so the U-Net's audio input `(32, 16, 16)` (16 feature rows, each split in two halves of 16 x 16)
holds uniform maps: channel `2r` is row r's `E`, channel `2r + 1` its `S`.

**U-Net audio branch**: `conv1` weighs the 16 rows with a Gaussian kernel (rows 5-9, centred on row 7: row r is
centred `40 ms x (r - 6.5)` after the frame's time) and clips: the mouth opening
`a = clip((sum_r k_r (E_r + SHAPE_WEIGHT (S_r - 1)) - low) / (high - low), 0, 1)`, where `low` and `high` are the
40th and 85th percentiles of that sum over the speech clip the weights are made for (closed in pauses and on m and n,
wide open on loud open vowels; silence and an all-zero input give 0). `conv5`'s padding (3) leaves the 10 x 10 map's border
cells reading only zeros; `conv6` copies column 1 into column 0 (the mouth of a head turned to one side reaches it).
`fuse_conv` and the up blocks carry `a` to the last block.

**Image path** (designated): the input block computes colour features of the real crop (B, G, R, R-G, G-R, R-B, and
darkness), and passes the crop itself (`4 x BGR - 2`, as the seeded channels and the reconstruction read it); each
down block blurs and halves them (a binomial pyramid); at 40 x 40 and 20 x 20 the residual blocks add their first
and second derivatives (split into positive and negative parts, so no offset costs precision in fp16).

**Mouth locator**: the first block of `up2` (40 x 40) is a one-hidden-layer network from those maps (both scales) to
the mouth's level map `M = 1 - d^2`: 1 on the lips' line, 0 on the edge of the widest opening (d = 1), -1 farther out
(the opening at level a, `d < sqrt(a)`, shows early and grows fastest when it is small, as a jaw does). Its target is
drawn from each template's lip landmarks (SyncTalk's 110 points: corners 90 and 96, inner lips 102-109): an
ellipse-like opening, wide as 0.84 of the mouth's corners, 0.4 of that high at full opening (35% above the lips'
line, 65% below), tilted with the mouth; narrower when less open (`|u|^6` across). It is fit by Adam (seeded, a fixed
number of steps) on up to 100 templates spread over the dataset. The map is carried up clipped to [-1, 1].

**Last block and output**: `up5`'s first block makes the opening's mask `clip(SHARPNESS (M + a - 1), 0, 1)` (about
3 pixels of soft edge), and the output convolution subtracts `DARKEN` from the logits under it (a dark, reddish
mouth; white teeth under it turn dark too). The rest is the demo weights' reconstruction: the deep seeded part of `up5`'s input damped to 0.5 %,
`up5`'s two projections and the output convolution solved by least squares (float64 normal equations) for the real
crop's logits on 8 templates, from the seeded features of the crop.

Made in about a minute of CPU on 2 cores (`make_listening_weights`; sanders-mini: 168 s on a machine shared with other
jobs, 74 s of it user CPU), cached like the demo weights under
`<cache>/weights/<key>/` keyed by the dataset's and the audio's bytes, this code and the libraries
(`listening_weights`). Deterministic on one machine: made again, by a process with any thread count, every tensor is
equal (made on one thread).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParityError
from ..models.threads import torch_threads

LISTENING_WEIGHTS_VERSION = 1
UNET_FILE, ENCODER_FILE, ABOUT_FILE = "unet_328_ave.pth", "audio_visual_encoder.pth", "weights.json"
LISTENING_WEIGHTS_LABEL = "listening test weights (the mouth follows the speech; for tests and demos, not a SyncTalk model)"

# lips in SyncTalk_2D's 110-point landmarks
LIP_CORNERS = (90, 96)
INNER_LIPS = slice(102, 110)
OUTER_LIPS = slice(90, 102)
# the opening at full width and height, relative to the distance between the lip corners
OPEN_WIDTH = 0.42  # half-width
OPEN_HEIGHT = 0.4  # total height at a = 1
OPEN_ABOVE = 0.35  # share of the height above the lips' line
OPEN_POWER = 6  # |u|^6: the opening narrows only near its corners as it closes
# audio to opening
ROW_CENTRE, ROW_SPREAD = 7.0, 0.8  # the temporal kernel over the 16 feature rows
SHAPE_WEIGHT = 0.75  # the mid band over the low one, in the opening's drive
CLOSED_PERCENTILE, OPEN_PERCENTILE = 40, 85
BAND_WEIGHTS = (0.3, 0.5, 0.2)  # low, mid, high band in the loudness
# rendering
SHARPNESS = 6.0
DARKEN = (4.2, 4.3, 3.7)  # logits subtracted under the opening, B, G, R: white teeth too turn dark
# the fit
LOCATOR_TEMPLATES = 100  # templates the mouth locator is fit on (spread over the dataset)
RECONSTRUCTION_TEMPLATES = 8  # templates the image reconstruction is fit on
LOCATOR_HIDDEN = 96
LOCATOR_STEPS = 600
LOCATOR_BATCH = 4096
BATCH = 4
RIDGE = 1e-3  # relative to the mean diagonal of the normal equations
DEEP_SCALE = 0.005  # the seeded deep part of up5's input (see the demo weights' history)
LOCATOR_GRID = 40  # up2's resolution
SHUT = 0.05  # the level map is clipped at 1 - SHUT on its way up: no opening at a = 0
COLOURS = 7  # colour features of the input block


@dataclass
class MadeWeights:
    """What `make_listening_weights` wrote and measured."""

    unet: Path
    audio_encoder: Path
    about: dict[str, Any] = field(default_factory=dict)


# ----- cached weights --------------------------------------------------------------------------------


def listening_weights(dataset_dir: str | Path, audio_path: str | Path, note: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """`(unet_328_ave.pth, audio_visual_encoder.pth)` of the listening weights for this dataset and speech, made now
    when not cached (under `<cache>/weights/<key>/`, keyed by the dataset's and the audio's bytes and this code)."""
    from ..cache import build_entry, cache_folder, check_entry, key_of

    parts = weights_key_parts(dataset_dir, audio_path)
    entry = cache_folder("weights") / key_of(parts)
    files = entry / UNET_FILE, entry / ENCODER_FILE
    if check_entry(entry) is None:
        return files
    if note is not None:
        note(f"Making listening test weights for {dataset_dir} (once, about a minute): a U-Net whose mouth follows the speech")
    build_entry(entry, "weights", LISTENING_WEIGHTS_LABEL, parts, lambda folder: make_listening_weights(dataset_dir, audio_path, folder))
    return files


@dataclass(frozen=True)
class WrittenWeights:
    """What `write_listening_weights` put in its folder."""

    folder: Path
    unet: Path
    audio_encoder: Path
    about: dict[str, Any]
    made: bool  # False: they came from the cache
    seconds: float


def write_listening_weights(dataset_dir: str | Path, audio_path: str | Path, out: str | Path,
                            note: Callable[[str], None] | None = None) -> WrittenWeights:
    """The listening weights for this dataset and speech (made, or taken from the cache) written into `out`: both
    checkpoints and `weights.json`. `out` is replaced whole, once complete; a folder holding other files is refused."""
    import shutil
    import time

    from ..atomic import building

    out = Path(out)
    ours = {UNET_FILE, ENCODER_FILE, ABOUT_FILE}
    if out.exists() and (not out.is_dir() or any(p.name not in ours for p in out.iterdir())):
        raise ParityError(f"{out}: exists and holds other files than listening weights; choose a new or empty folder for --out")
    started = time.perf_counter()
    made: list[str] = []

    def making(text: str) -> None:
        made.append(text)
        if note is not None:
            note(text)

    unet, encoder = listening_weights(dataset_dir, audio_path, making)
    with building(out) as tmp:
        for source in (unet, encoder, unet.parent / ABOUT_FILE):
            shutil.copyfile(source, tmp / source.name)
    about = read_about(out / UNET_FILE) or {}
    return WrittenWeights(out, out / UNET_FILE, out / ENCODER_FILE, about, bool(made), time.perf_counter() - started)


def weights_key_parts(dataset_dir: str | Path, audio_path: str | Path) -> dict[str, Any]:
    """The cache key's parts: the dataset's images and landmarks and the audio (sha256 of their bytes), this code and
    the libraries that compute the weights (not the CPU's instruction set: made elsewhere they may differ in their last
    bits and are as good; what is computed from them is keyed by their own sha256)."""
    from ..cache import REFERENCE_LIBRARIES, environment, sha256_file
    from .dataset import open_dataset

    dataset = open_dataset(dataset_dir)
    if not Path(audio_path).is_file():
        raise ParityError(f"{audio_path}: audio file not found")
    images = _digest(sha256_file(t.image_path) for t in dataset.templates)
    landmarks = _digest(np.asarray(t.landmarks, np.float32).tobytes().hex() for t in dataset.templates)
    env = environment(("models", "reference"), REFERENCE_LIBRARIES)
    return {
        "inputs": {"what": "listening weights", "version": LISTENING_WEIGHTS_VERSION, "templates": dataset.template_count,
                   "images": images, "landmarks": landmarks, "audio": sha256_file(audio_path)},
        "environment": {k: v for k, v in env.items() if k not in ("synctalk-parity", "ONEDNN_MAX_CPU_ISA", "cpu_isa")},
    }


def _digest(items: Iterator[str] | Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for item in items:
        h.update(item.encode())
    return h.hexdigest()


def read_about(checkpoint: str | Path) -> dict[str, Any] | None:
    """The `weights.json` beside a checkpoint made here (what the weights are, what they were made for), else None."""
    try:
        about = json.loads((Path(checkpoint).parent / ABOUT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return about if isinstance(about, dict) and about.get("what") else None


# ----- making them ---------------------------------------------------------------------------------


def make_listening_weights(dataset_dir: str | Path, audio_path: str | Path, out_dir: str | Path, label: str = LISTENING_WEIGHTS_LABEL,
                           progress: Callable[[str], None] | None = None) -> MadeWeights:
    """Build both networks for this dataset and speech (module docstring) and write them into `out_dir` as
    original-layout checkpoints, with `weights.json` saying what they are."""
    import time

    import torch

    from ..models.checkpoints import save_audio_encoder, save_unet
    from .dataset import open_dataset

    say = progress or (lambda text: None)
    started = time.perf_counter()
    dataset = open_dataset(dataset_dir)
    lips = [lip_frame(t.landmarks, t.box, f"{t.image_path.name}'s landmarks (template {t.index})") for t in dataset.templates]
    # on one thread whatever the process has: PyTorch's CPU convolutions sum in an order that depends on the thread
    # count and the fits amplify it (made with 1 and with 2 threads, 136 of the U-Net's 556 tensors differed, by up to
    # 13 in a batch norm's running variance); pinned, the weights are equal whoever makes them on one machine
    with torch.random.fork_rng(devices=[]), torch.inference_mode(), torch_threads(1):
        torch.manual_seed(0)
        encoder = build_audio_encoder()
        say("audio encoder built; calibrating the opening on the speech")
        opening = calibrate_opening(encoder, audio_path)
        builder = _UNetBuilder(opening)
        say("colour pyramid and audio branch built")
        locator = builder.fit_image_path(dataset, lips, say)
    unet = builder.net
    about = {"what": label, "dataset": str(dataset_dir), "audio": str(audio_path), "templates": dataset.template_count,
             "opening": opening.as_dict(), "mouth_locator": locator, "seconds": round(time.perf_counter() - started, 1)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unet_path, encoder_path = save_unet(unet, out / UNET_FILE), save_audio_encoder(encoder, out / ENCODER_FILE)
    (out / ABOUT_FILE).write_text(json.dumps(about, indent=1) + "\n")
    return MadeWeights(unet_path, encoder_path, about)


# ----- lips from landmarks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LipFrame:
    """Where a template's mouth is in the U-Net's 320 x 320 input: the lips' line centre, its direction and width."""

    centre: tuple[float, float]  # x, y
    along: tuple[float, float]  # unit vector from the left corner to the right one
    width: float  # between the corners


def lip_frame(landmarks: np.ndarray, box: tuple[int, int, int, int], source: Path | str = "landmarks") -> LipFrame:
    """The template's lips in the U-Net input's pixels (the 328 crop's inner 320), from SyncTalk's lip points."""
    from .frames import CROP_SIZE, INNER

    xmin, ymin, xmax, ymax = box
    scale = np.array([CROP_SIZE / (xmax - xmin), CROP_SIZE / (ymax - ymin)])
    points = (np.asarray(landmarks, np.float64) - [xmin, ymin]) * scale - INNER[0]
    left, right = points[LIP_CORNERS[0]], points[LIP_CORNERS[1]]
    inner = points[INNER_LIPS]
    width = float(np.linalg.norm(right - left))
    centre = np.array([(points[102, 0] + points[106, 0]) / 2, inner[:, 1].mean()])
    if not (width > 8 and 0 <= centre[0] < 320 and 0 <= centre[1] < 320 and right[0] > left[0]):
        raise ParityError(f"{source}: the lip points (90-109 of SyncTalk's 110) do not describe a mouth inside the crop box "
                          f"(corners {left.round(1).tolist()} and {right.round(1).tolist()} in the crop); listening weights need SyncTalk's landmark layout")
    along = (right - left) / width
    return LipFrame((float(centre[0]), float(centre[1])), (float(along[0]), float(along[1])), width)


def mouth_level(lips: LipFrame, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The level map M on the grid `ys x xs` (pixel positions): the opening at level a is where `M + a > 1`."""
    X, Y = np.meshgrid(np.asarray(xs, np.float64), np.asarray(ys, np.float64))
    dx, dy = X - lips.centre[0], Y - lips.centre[1]
    ax, ay = lips.along
    u = dx * ax + dy * ay
    v = -dx * ay + dy * ax  # down, perpendicular to the lips' line
    half_width = OPEN_WIDTH * lips.width
    height = OPEN_HEIGHT * lips.width
    reach = np.where(v < 0, OPEN_ABOVE * height, (1 - OPEN_ABOVE) * height)
    distance = np.sqrt(np.abs(u / half_width) ** OPEN_POWER + (v / reach) ** 2)
    return np.clip(1 - distance**2, -1, 1)


def decoder_grid(size: int) -> np.ndarray:
    """Pixel positions (of 320) of the cells of a `size`-cell decoder level, as the up blocks' bilinear
    upsampling (align_corners) maps them to the output."""
    return np.arange(size) * (319 / (size - 1))


# ----- audio: encoder and calibration ------------------------------------------------------------------


@dataclass(frozen=True)
class Opening:
    """How the U-Net turns the 16 feature rows into the opening `a`: `clip((sum_r k_r (E_r + SHAPE_WEIGHT (S_r - 1)) - low) / (high - low), 0, 1)`."""

    low: float
    high: float
    kernel: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"low": round(self.low, 6), "high": round(self.high, 6), "kernel": [round(k, 4) for k in self.kernel],
                "shape_weight": SHAPE_WEIGHT, "percentiles": [CLOSED_PERCENTILE, OPEN_PERCENTILE]}

    def of(self, features: np.ndarray) -> np.ndarray:
        """The opening of every output frame of a clip, from its padded features `(N + 2, 512)` (as the U-Net computes it)."""
        return np.clip((_drive(features, self.kernel) - self.low) / (self.high - self.low), 0, 1)


def _drive(features: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """`sum_r k_r (E_r + SHAPE_WEIGHT (S_r - 1))` for every output frame: what the opening is a clipped line of."""
    from .audio import unet_audio_window

    rows = np.stack([unet_audio_window(features, i).reshape(16, 512) for i in range(len(features))])
    return np.einsum("r,nr->n", np.asarray(kernel), rows[:, :, 0] + SHAPE_WEIGHT * (rows[:, :, 256] - 1))


def row_kernel() -> tuple[float, ...]:
    rows = np.arange(16)
    k = np.exp(-0.5 * ((rows - ROW_CENTRE) / ROW_SPREAD) ** 2)
    k[k < 0.02 * k.max()] = 0
    return tuple(float(x) for x in k / k.sum())


def calibrate_opening(encoder: Any, audio_path: str | Path) -> Opening:
    """`low` and `high` from the speech: the percentiles of the opening's drive over the clip's frames."""
    import torch

    from . import audio as A

    windows = A.mel_windows(A.mel_spectrogram(A.load_audio(audio_path)), str(audio_path))
    with torch.inference_mode():
        features = A.pad_features(A.encode_windows(lambda w: encoder(torch.from_numpy(w)).numpy(), windows))
    kernel = row_kernel()
    drive = _drive(features, kernel)
    low, high = (float(v) for v in np.percentile(drive, [CLOSED_PERCENTILE, OPEN_PERCENTILE]))
    if not high - low > 1e-3:
        raise ParityError(f"{audio_path}: no speech to calibrate the mouth on (the loudness hardly varies over the clip); give a speech recording")
    return Opening(low, high, kernel)


def build_audio_encoder() -> Any:
    """The audio encoder of the module docstring: seeded weights, designated channel 0 carrying the loudness."""
    import torch

    from ..models.fixtures import fixture_audio_encoder

    encoder = fixture_audio_encoder(seed=0)
    blocks: list[Any] = [block.conv_block for block in encoder.audio_encoder]
    for index, (conv, norm) in enumerate(blocks):
        # designated: channel 0 (the loudness path) up to block 10; E and S out of block 11; every feature out of block 12
        designated_in = [] if index == 0 else [0] if index <= 11 else [0, 1]
        designated_out = [0] if index <= 10 else [0, 1] if index == 11 else list(range(conv.out_channels))
        conv.weight[designated_out] = 0
        conv.bias[designated_out] = 0
        rest = [c for c in range(conv.out_channels) if c not in designated_out]
        if designated_in and rest:  # seeded channels do not read designated ones (they read the mel itself)
            conv.weight[np.ix_(rest, designated_in)] = 0
        _identity_norm(norm, designated_out)
    third = 1 / 3
    (c0, _), (c3, _), (c6, _), (c9, _), (c11, _), (c12, _) = (blocks[i] for i in (0, 3, 6, 9, 11, 12))
    c0.weight[0, 0, 1, 1] = 1.0
    c0.bias[0] = 4.0  # mel + 4 >= 0
    c3.weight[0, 0, :, 1] = third  # stride (3, 1): mean of three bins
    c6.weight[0, 0] = 1 / 9  # stride 3: mean of 3 x 3
    c9.weight[0, 0, :, 1:] = third / 2  # stride (3, 2): mean of three bands' rows, time cells 2t and 2t + 1
    low, mid, high = BAND_WEIGHTS
    c11.weight[0, 0, :, 1] = torch.tensor([low, mid, high]) / 8  # E: the centre time cell, bands weighted
    c11.weight[1, 0, :, 1] = torch.tensor([-1.0, 1.0, 0.0]) / 8  # S - 1: the mid band minus the low one
    c11.bias[1] = 1.0
    half = c12.out_channels // 2
    c12.weight[:half, 0, 0, 0] = 1.0
    c12.weight[half:, 1, 0, 0] = 1.0
    return encoder.eval()


# ----- the U-Net -------------------------------------------------------------------------------------


@dataclass
class Unit:
    """One hidden unit of an inverted residual block: `project(relu(dw(relu(expand(x) + bias)) + after))`."""

    inputs: dict[int, float]
    outputs: dict[int, float]
    bias: float = 0.0
    kernel: Any = None  # 3 x 3 depthwise kernel; None: the centre tap (a copy)
    after: float = 0.0


CENTRE = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)
BINOMIAL = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16
DERIVATIVES = (
    np.array([[0, 0, 0], [-0.5, 0, 0.5], [0, 0, 0]], np.float32),  # d/dx
    np.array([[0, -0.5, 0], [0, 0, 0], [0, 0.5, 0]], np.float32),  # d/dy
    np.array([[0, 0, 0], [1, -2, 1], [0, 0, 0]], np.float32),  # d2/dx2
    np.array([[0, 1, 0], [0, -2, 0], [0, 1, 0]], np.float32),  # d2/dy2
)
PYRAMID = COLOURS * (1 + 2 * len(DERIVATIVES))  # designated maps per locator scale: colours, then +/- derivatives


def route(block: Any, units: Sequence[Unit], designated_in: Sequence[int], designated_out: Sequence[int], out_bias: dict[int, float] | None = None) -> None:
    """Give an inverted residual block's first `len(units)` hidden channels the units' weights, and isolate them: the
    designated outputs read only these units (plus `out_bias`), the seeded hidden channels read no designated input,
    and the seeded outputs read no designated hidden channel."""
    import torch

    expand, norm1, _, depthwise, norm2, _, project, norm3 = block.conv
    hidden = list(range(len(units)))
    rest_hidden = list(range(len(units), expand.out_channels))
    expand.weight[hidden] = 0
    if rest_hidden and designated_in:
        expand.weight[np.ix_(rest_hidden, list(designated_in))] = 0
    project.weight[list(designated_out)] = 0
    rest_out = [c for c in range(project.out_channels) if c not in set(designated_out)]
    if rest_out and hidden:
        project.weight[np.ix_(rest_out, hidden)] = 0
    for j, unit in enumerate(units):
        for channel, weight in unit.inputs.items():
            expand.weight[j, channel, 0, 0] = weight
        depthwise.weight[j, 0] = torch.from_numpy(CENTRE if unit.kernel is None else np.asarray(unit.kernel, np.float32))
        for channel, weight in unit.outputs.items():
            project.weight[channel, j, 0, 0] = weight
    _identity_norm(norm1, hidden, [u.bias for u in units])
    _identity_norm(norm2, hidden, [u.after for u in units])
    biases = out_bias or {}
    _identity_norm(norm3, list(designated_out), [biases.get(c, 0.0) for c in designated_out])


def _identity_norm(norm: Any, channels: Sequence[int], bias: Sequence[float] | None = None) -> None:
    """BatchNorm as the identity (plus `bias`) on `channels`: mean 0, variance 1 - eps, scale 1."""
    import torch

    channels = list(channels)
    if not channels:
        return
    norm.running_mean[channels] = 0
    norm.running_var[channels] = 1 - norm.eps
    norm.weight[channels] = 1
    norm.bias[channels] = torch.tensor(list(bias) if bias is not None else [0.0] * len(channels), dtype=norm.bias.dtype)


def _passing(channels: Sequence[int], targets: Sequence[int] | None = None, offset: float = 0.0) -> list[Unit]:
    """Units that copy non-negative (or offset) channels to `targets` (the same indices by default)."""
    targets = list(targets) if targets is not None else list(channels)
    return [Unit({c: 1.0}, {t: 1.0}, bias=offset) for c, t in zip(channels, targets)]


class _UNetBuilder:
    """The U-Net of the module docstring, built in place on the seeded fixture."""

    def __init__(self, opening: Opening):
        from ..models.fixtures import fixture_unet

        self.net: Any = fixture_unet(seed=0)  # built in place, submodule by submodule
        self.opening = opening
        self._build_audio_branch()
        self._build_image_path()
        self._build_decoder()

    # designated channel layout
    A = 0  # the opening, in the audio branch, fuse_conv and the up blocks
    M = 1  # the mouth's level map, from up2 on

    def _build_audio_branch(self) -> None:
        branch = self.net.audio_model
        kernel = self.opening.kernel
        scale = 1 / (self.opening.high - self.opening.low)
        drive: dict[int, float] = {}
        for r, k in enumerate(kernel):
            if k:
                drive[2 * r] = k * scale
                drive[2 * r + 1] = k * scale * SHAPE_WEIGHT
        offset = -(SHAPE_WEIGHT * sum(kernel) + self.opening.low) * scale
        everything = list(range(32))
        route(branch.conv1, [Unit(drive, {0: 1.0}, bias=offset), Unit(drive, {0: -1.0}, bias=offset - 1), Unit({}, {1: 1.0}, bias=1.0)],
              everything, [0, 1])
        route(branch.conv2, _passing([0, 1]), [0, 1], [0, 1])
        for conv, norm, channels in ((branch.conv3, branch.bn3, [0, 1]), (branch.conv5, branch.bn5, [0, 1, 2])):
            rest = [c for c in range(conv.out_channels) if c not in channels]
            conv.weight[channels] = 0
            conv.bias[channels] = 0
            conv.weight[np.ix_(rest, [0, 1])] = 0
            _identity_norm(norm, channels)
        branch.conv3.weight[0, 0, 1, 1] = branch.conv3.weight[1, 1, 1, 1] = 1.0
        # conv5 (stride 2, padding 3): the tap (2, 2) reads rows and columns 1..8 of the 10 x 10 output from inside the
        # map; the tap (2, 0) columns 2..9. Channel 0: a; 1 and 2: ones where each tap reads the map
        branch.conv5.weight[0, 0, 2, 2] = branch.conv5.weight[1, 1, 2, 2] = 1.0
        branch.conv5.weight[2, 1, 2, 0] = 1.0
        shift_left = np.zeros((3, 3), np.float32)
        shift_left[1, 2] = 1.0
        border = 2.0  # > the largest a
        route(branch.conv4, [], [0, 1], [0, 1])
        route(branch.conv6, [Unit({0: 1.0, 1: border, 2: -border}, {0: 1.0}, bias=-border, kernel=shift_left)], [0, 1, 2], [0, 1, 2])
        route(branch.conv7, [], [0, 1, 2], [0, 1, 2])

    def _build_image_path(self) -> None:
        net = self.net
        # input block: channels 0-2 of the input are the real crop's B, G, R / 255
        b, g, r = 0, 1, 2
        colour_units = [
            Unit({b: 1.0}, {0: 4.0, 3: 1.0}), Unit({g: 1.0}, {1: 4.0, 4: 1.0}), Unit({r: 1.0}, {2: 4.0, 5: 1.0}),
            Unit({r: 1.0, g: -1.0}, {6: 1.0}), Unit({g: 1.0, r: -1.0}, {7: 1.0}), Unit({r: 1.0, b: -1.0}, {8: 1.0}, bias=-0.1),
            Unit({b: -1 / 3, g: -1 / 3, r: -1 / 3}, {9: 1.0}, bias=0.35),
        ]
        self.image = [0, 1, 2]  # 4 BGR - 2: read by the seeded channels too
        colours = list(range(3, 3 + COLOURS))
        route(net.inc.inconv[0], colour_units, [], [*self.image, *colours], {0: -2.0, 1: -2.0, 2: -2.0})
        # pyramid: each down block's first block blurs and halves the colour maps; at 40 x 40 (x4) and 20 x 20 (x5)
        # its second (residual) block adds their derivatives, split in positive and negative parts
        maps = list(range(COLOURS))
        previous = colours
        for level, down in enumerate((net.down1, net.down2, net.down3, net.down4)):
            first, second = down.maxpool_conv[0].double_conv
            designated = list(range(PYRAMID)) if level >= 2 else maps
            route(first, [Unit({c: 1.0}, {m: 1.0}, kernel=BINOMIAL) for c, m in zip(previous, maps)], previous if level == 0 else self._carried(level - 1),
                  designated)
            units = []
            if level >= 2:
                for k, kernel in enumerate(DERIVATIVES):
                    for sign in (1, -1):
                        units += [Unit({m: 1.0}, {COLOURS * (1 + 2 * k + (sign < 0)) + m: 1.0}, kernel=sign * kernel) for m in maps]
            route(second, units, designated, designated)
            previous = maps
        # the deepest down block is seeded only: it does not read the pyramid
        net.down5.maxpool_conv[0].double_conv[0].conv[0].weight[:, :PYRAMID] = 0

    @staticmethod
    def _carried(level: int) -> list[int]:
        """The designated channels of the output of down block `level` (0: down1)."""
        return list(range(PYRAMID)) if level >= 2 else list(range(COLOURS))

    def _build_decoder(self) -> None:
        net = self.net
        A, M = self.A, self.M
        # fuse_conv reads [x6 (512, seeded), audio (512): 0 = a, 1 and 2 the border's ones]; the audio branch's seeded
        # channels read nothing (constant maps), so nothing reads them either
        fuse1, fuse2 = net.fuse_conv
        audio = [512, 513, 514]
        fuse1.double_conv[0].conv[0].weight[:, 515:] = 0
        route(fuse1.double_conv[0], _passing([512], [A]), audio, [A])
        route(fuse1.double_conv[1], [], [A], [A])
        route(fuse2.double_conv[0], _passing([A]), [A], [A])
        route(fuse2.double_conv[1], [], [A], [A])
        # up1: [up(fuse) (256), x5 (256)] -> a and the 20 x 20 maps
        maps20 = list(range(2, 2 + PYRAMID))
        x5 = [256 + c for c in range(PYRAMID)]
        route(net.up1.conv.double_conv[0], _passing([A, *x5], [A, *maps20]), [A, *x5], [A, *maps20])
        route(net.up1.conv.double_conv[1], [], [A, *maps20], [A, *maps20])
        # up2: [up(up1) (128), x4 (128)]; its first block is the mouth locator (weights set by _fit_locator), its second
        # passes a and M
        self.locator_inputs = [*maps20, *[128 + c for c in range(PYRAMID)]]
        self._route_locator([Unit({}, {}) for _ in range(LOCATOR_HIDDEN)], 0.0)
        route(net.up2.conv.double_conv[1], [], [A, M], [A, M])
        # up3: [up(up2) (64), x3 (64)]: a, and M clipped to [-1, 1 - SHUT], stored as M + 1
        x3 = [64 + c for c in range(COLOURS)]
        route(net.up3.conv.double_conv[0], [Unit({A: 1.0}, {A: 1.0}), Unit({M: 1.0}, {M: 1.0}, bias=1.0), Unit({M: 1.0}, {M: -1.0}, bias=SHUT - 1)],
              [A, M, *x3], [A, M])
        route(net.up3.conv.double_conv[1], [], [A, M], [A, M])
        # up4: [up(up3) (32), x2 (32)]
        route(net.up4.conv.double_conv[0], _passing([A, M]), [A, M, *[32 + c for c in range(COLOURS)]], [A, M])
        route(net.up4.conv.double_conv[1], [], [A, M], [A, M])
        # up5: [up(up4) (32), x1 (32)]: the opening's mask clip(g (M + a - 1), 0, 1) into channel 3 (0-2: the crop's logits)
        self.mask = 3
        drive = {A: SHARPNESS, M: SHARPNESS}  # M arrives as M + 1: g (M + 1 + a - 2)
        route(net.up5.conv.double_conv[0], [Unit(drive, {self.mask: 1.0}, bias=-2 * SHARPNESS), Unit(drive, {self.mask: -1.0}, bias=-2 * SHARPNESS - 1)],
              [A, M, *[32 + c for c in range(3, 3 + COLOURS)]], [self.mask])
        route(net.up5.conv.double_conv[1], [], [self.mask], [self.mask])

    def _route_locator(self, units: list[Unit], bias: float) -> None:
        """up2's first block: the locator's hidden units (to M), then one copying a."""
        route(self.net.up2.conv.double_conv[0], [*units, Unit({self.A: 1.0}, {self.A: 1.0})], [self.A, *self.locator_inputs], [self.A, self.M],
              {self.M: bias})

    # ----- fitting -----

    def fit_image_path(self, dataset: Any, lips: Sequence[LipFrame], say: Callable[[str], None]) -> dict[str, Any]:
        """Recalibrate the seeded channels, fit the mouth locator and the reconstruction; returns the locator's fit figures."""
        import torch

        net = self.net
        count = dataset.template_count
        locator_templates = np.unique(np.linspace(0, count - 1, min(count, LOCATOR_TEMPLATES)).round().astype(int))
        recon_templates = np.unique(np.linspace(0, count - 1, min(count, RECONSTRUCTION_TEMPLATES)).round().astype(int))
        images = {int(i): _unet_input(dataset, int(i)) for i in locator_templates}
        for i in recon_templates:
            images.setdefault(int(i), _unet_input(dataset, int(i)))
        recon = torch.from_numpy(np.stack([images[int(i)] for i in recon_templates]))
        silence = torch.zeros(len(recon), 32, 16, 16)
        # 1. the seeded channels' statistics, on the reconstruction templates (the designated ones stay as set)
        _recalibrate_modules(net, [net], lambda: _batched(lambda x, a: net(x, a), recon, silence))
        say("seeded channels recalibrated on the avatar")
        # 2. the mouth locator: its inputs at 40 x 40 for every locator template, its target from the lips
        features = self._locator_features(torch.from_numpy(np.stack([images[int(i)] for i in locator_templates])))
        grid = decoder_grid(LOCATOR_GRID)
        targets = np.stack([mouth_level(lips[int(i)], grid, grid) for i in locator_templates]).astype(np.float32)
        figures = self._fit_locator(features, targets)
        say(f"mouth locator fit on {len(locator_templates)} templates (opening overlap {figures['overlap']:.2f})")
        # 3. the reconstruction of the crop, as the demo weights fit it
        self._fit_reconstruction(recon, silence)
        self._set_output()
        net.eval()
        return {**figures, "templates": len(locator_templates)}

    def _locator_features(self, images: Any) -> np.ndarray:
        """The locator's inputs `(T, 40, 40, F)` for each template: up2's designated input channels. up1 copies the
        20 x 20 maps of x5 unchanged and up2 upsamples them, so they are taken from x5 without running the deep blocks."""
        net = self.net
        taken = []
        for rows in range(0, len(images), BATCH):
            x4 = net.down3(net.down2(net.down1(net.inc(images[rows : rows + BATCH]))))
            x5 = net.down4(x4)
            maps = [net.up2.up(x5[:, :PYRAMID]), x4[:, :PYRAMID]]
            taken.append(np.concatenate([m.permute(0, 2, 3, 1).numpy() for m in maps], axis=3))
        return np.concatenate(taken)

    def _fit_locator(self, features: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Adam on a one-hidden-layer network, features (normalized) to the level map; then written into up2's first block."""
        import torch

        count, height, width, inputs = features.shape
        with torch.inference_mode(False), torch.enable_grad():  # the builder runs in inference mode; this fit needs gradients
            x = torch.from_numpy(features.reshape(-1, inputs)).double()
            y = torch.from_numpy(targets.reshape(-1)).float()
            mean, spread = x.mean(0), x.std(0) + 1e-3
            xn = ((x - mean) / spread).float()
            near = (y > -0.95).float() * 3 + 1
            generator = torch.Generator().manual_seed(0)
            first, second = torch.nn.Linear(inputs, LOCATOR_HIDDEN), torch.nn.Linear(LOCATOR_HIDDEN, 1)
            with torch.no_grad():
                for layer in (first, second):  # seeded here, not from the global generator
                    bound = 1 / math.sqrt(layer.in_features)
                    layer.weight.copy_(torch.empty_like(layer.weight).uniform_(-bound, bound, generator=generator))
                    layer.bias.copy_(torch.empty_like(layer.bias).uniform_(-bound, bound, generator=generator))
            optimizer = torch.optim.Adam([*first.parameters(), *second.parameters()], lr=3e-3)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, LOCATOR_STEPS)
            for _ in range(LOCATOR_STEPS):
                rows = torch.randint(0, len(xn), (LOCATOR_BATCH,), generator=generator)
                predicted = second(torch.relu(first(xn[rows]))).squeeze(1)
                loss = (near[rows] * (predicted - y[rows]) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            with torch.no_grad():
                predicted = second(torch.relu(first(xn))).squeeze(1).numpy().reshape(count, height, width)
                w1 = (first.weight.double() / spread).float()
                b1 = (first.bias.double() - (first.weight.double() / spread) @ mean).float()
                w2, b2 = second.weight[0].clone(), float(second.bias[0])
        offset = _opening_offset(predicted, targets)
        predicted = np.clip(predicted + offset, -1, 1 - SHUT)
        # into up2's first block: hidden = relu(W (x - mean) / spread + b); M = w2 . hidden + b2; and a copy of a
        units = [Unit({channel: float(w1[j, k]) for k, channel in enumerate(self.locator_inputs)}, {self.M: float(w)}, bias=float(b1[j]))
                 for j, w in enumerate(w2)]
        self._route_locator(units, b2 + offset)
        return {"rms_near_mouth": round(float(np.sqrt(np.mean(((predicted - targets)[targets > -0.95]) ** 2))), 4),
                "overlap": round(_overlap(predicted, targets), 4), "offset": round(offset, 4)}

    def _fit_reconstruction(self, images: Any, silence: Any) -> None:
        """up5's projections and the output convolution, least squares to the real crop's logits (the demo weights' steps 3-4)."""
        import torch

        net = self.net
        last = net.up5.conv.double_conv
        target = images[:, :3].clamp(0.01, 0.99)
        logits = torch.log(target / (1 - target))
        seeded_hidden = slice(2, None)
        # the seeded deep part of up5's input, damped (its rounding error would otherwise reach the output at full size)
        last[0].conv[0].weight[seeded_hidden, 2:32] *= DEEP_SCALE
        _recalibrate_modules(net, [net.up5], lambda: _batched(lambda x, a: net(x, a), images, silence))
        captured: list[tuple[Any, Any]] = []
        with _hooks(net.up5.register_forward_pre_hook(lambda module, args: captured.append(args))):
            _batched(lambda x, a: net(x, a), images, silence)

        def run_last() -> None:
            for deep, skip in captured:
                net.outc(net.up5(deep, skip))

        mask = self.mask
        keep = [c for c in range(16) if c != mask]
        seeded = list(range(2, last[0].conv[0].out_channels))

        def logits_then_zeros(rows: slice, out: Any) -> Any:
            zeros = torch.zeros_like(out[:, 3:])
            return torch.cat([logits[rows], zeros], 1)

        _solve_projection(run_last, last[0].conv[6], last[0].conv[7], logits_then_zeros, inputs=seeded, outputs=keep)
        _recalibrate_modules(net, [last[1]], run_last)
        block_input: dict[str, Any] = {}
        with _hooks(last[1].register_forward_pre_hook(lambda module, args: block_input.__setitem__("y", args[0]))):
            _solve_projection(run_last, last[1].conv[6], last[1].conv[7], lambda rows, out: logits_then_zeros(rows, out) - block_input["y"],
                              inputs=list(range(last[1].conv[6].in_channels)), outputs=keep)
        weight, bias = _least_squares(run_last, net.outc.conv, lambda rows, out: logits[rows], inputs=keep)
        net.outc.conv.weight.zero_()
        net.outc.conv.weight[:, keep] = weight.reshape(3, len(keep), 1, 1)
        net.outc.conv.bias.copy_(bias)

    def _set_output(self) -> None:
        import torch

        self.net.outc.conv.weight[:, self.mask, 0, 0] = -torch.tensor(DARKEN)


def _opening_offset(predicted: np.ndarray, targets: np.ndarray) -> float:
    """What to add to the fitted level map so that its openings at a = 0.5 have the drawn ones' area on average (the fit
    rounds off the map's ridge on the lips' line, so it opens late). The map is clipped below 1 afterwards (`SHUT`)."""
    drawn = (targets > 0.5).sum()
    candidates = np.linspace(-0.2, 0.4, 61)
    areas = np.array([(predicted + d > 0.5).sum() for d in candidates])
    return float(candidates[np.argmin(np.abs(np.log((areas + 1) / (drawn + 1))))])


def _overlap(predicted: np.ndarray, targets: np.ndarray) -> float:
    """Mean intersection over union of the openings at a = 0.5 and 1, predicted and drawn from the lips (40 x 40)."""
    scores = []
    for a in (0.5, 1.0):
        p, t = predicted + a > 1, targets + a > 1
        union = (p | t).sum(axis=(1, 2))
        scores.append(np.where(union > 0, (p & t).sum(axis=(1, 2)) / np.maximum(union, 1), 1.0))
    return float(np.mean(scores))


def _unet_input(dataset: Any, index: int) -> np.ndarray:
    from . import frames as F

    template = dataset.templates[index]
    return F.unet_input(F.crop_328(template.read_image(), template.box))


def _batched(run: Callable[[Any, Any], Any], images: Any, audio: Any) -> None:
    for rows in range(0, len(images), BATCH):
        run(images[rows : rows + BATCH], audio[rows : rows + BATCH])


def _recalibrate_modules(net: Any, modules: Sequence[Any], run: Callable[[], None]) -> None:
    """BatchNorm statistics of `modules` as cumulative averages over `run()`'s batches (torch.optim.swa_utils.update_bn),
    keeping the designated channels' (variance exactly 1 - eps, mean 0) as they are."""
    from torch import nn

    norms = [m for module in modules for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(norm, {k: v.clone() for k, v in norm.state_dict().items()}) for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    run()
    net.eval()
    for norm, state in saved:
        keep = (state["running_var"] == 1 - norm.eps) & (state["running_mean"] == 0)
        for name in ("running_mean", "running_var", "weight", "bias"):
            getattr(norm, name)[keep] = state[name][keep]
        norm.momentum = 0.1


def _solve_projection(run: Callable[[], None], conv: Any, norm: Any, target: Callable, inputs: Sequence[int], outputs: Sequence[int]) -> None:
    """Set the 1x1 `conv` (no bias) rows `outputs` from columns `inputs`, and its BatchNorm, so that `norm(conv(x))` is the
    least-squares fit of `target` on those outputs; the BatchNorm becomes the identity plus the fit's offset there."""
    weight, bias = _least_squares(run, conv, lambda rows, out: target(rows, out)[:, outputs], inputs=inputs, output_of=norm)
    conv.weight[outputs] = 0
    conv.weight[np.ix_(list(outputs), list(inputs))] = weight.reshape(len(outputs), len(inputs), 1, 1)
    _identity_norm(norm, list(outputs), bias.tolist())


def _least_squares(run: Callable[[], None], conv: Any, target: Callable, inputs: Sequence[int], output_of: Any | None = None) -> tuple[Any, Any]:
    """Weights `(out, in)` and bias `(out,)` of the 1x1 map from `conv`'s input channels `inputs` to `target(rows, out)`,
    by normal equations accumulated over every batch (float64, ridge `RIDGE`)."""
    import torch

    sums: dict[str, Any] = {}
    taken: dict[str, Any] = {}
    seen = [0]
    columns = list(inputs)

    def take_input(module: Any, args: tuple) -> None:
        taken["x"] = args[0]

    def accumulate(module: Any, args: tuple, out: Any) -> None:
        x = taken["x"][:, columns]
        rows = slice(seen[0], seen[0] + len(x))
        seen[0] += len(x)
        y = target(rows, out)
        a = torch.cat([x, torch.ones_like(x[:, :1])], 1).permute(0, 2, 3, 1).reshape(-1, len(columns) + 1).double()
        b = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).double()
        sums["ata"] = sums.get("ata", 0) + a.T @ a
        sums["atb"] = sums.get("atb", 0) + a.T @ b

    with _hooks(conv.register_forward_pre_hook(take_input), (output_of or conv).register_forward_hook(accumulate)):
        run()
    ata = sums["ata"]
    ridge = RIDGE * torch.trace(ata) / len(ata)
    solution = torch.linalg.solve(ata + ridge * torch.eye(len(ata), dtype=ata.dtype), sums["atb"]).float()
    return solution[:-1].T.contiguous(), solution[-1].contiguous()


@contextmanager
def _hooks(*handles: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
