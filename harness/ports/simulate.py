"""Diagnosis by simulation: which known port mistakes, applied to the reference, make the candidate's frames.

The signature-based diagnoses (`diagnose.py`) need a port's intermediate stages. A port that only hands
over its output frames can still be diagnosed, because the toolkit owns the reference pipeline: it re-runs
the reference on a few sampled output frames with known mistakes applied, and looks for the combination
of mistakes whose frames match the candidate's.

    simulator = Simulator(dataset, pcm, generate=backend.generate, encode=backend.encode_audio)
    explanation = explain(simulator, {i: frame_i, ...}, sample=[0, 7, 19, 33], candidate_frame_count=246)
    print(explanation.summary())

**Variants.** A `Variant` is one pipeline: the reference (`Variant()`) with some of its steps replaced,
field by field: the audio front end (STFT centring and padding, window, pre-emphasis, magnitude, mel
scale, dB reference, normalization, feature padding), the U-Net audio input (silent, constant, one row
tiled, shifted), the frame geometry (template and landmark offsets, one box for all, crop
interpolation, JPEG-compressed templates or crops), the U-Net image input (channel order, halves,
scale, mask rectangle) and what follows the network (rounding, channel order, the 328 canvas, paste
interpolation, lossy output). `Simulator.frames(variant, indices)` makes that pipeline's output frames.

**Cost.** Features are cached per front end (and only the 64-window encoder batches that hold the
windows the sampled frames read are encoded, batched as the reference batches them, so the reference's
features come out bit for bit); U-Net outputs are cached by the hash of their inputs, so every mistake after the network,
and every combination of them, reuses the outputs; the rest (crop, paste, JPEG) is recomputed, in
milliseconds.

**Search.** `explain` is greedy. The score of a variant is the PSNR between the candidate's sampled
frames and the variant's, measured separately inside the crop boxes and outside them (so output-wide
mistakes such as a lossy frame writer count), combined as the PSNR of the mean of the two squared
errors. It starts from the reference; each round it tries every catalogued hypothesis (`HYPOTHESES`)
that touches none of the steps already replaced, on top of the accepted ones, and accepts the best if
it raises the score by at least `margin_db` (1 dB by default: 21% less squared error; two runtimes'
U-Nets differ by about 90 dB, an error 10^5 times smaller than a 20-40 dB mismatch, while a mistake that
explains the frames moves the score by several dB) without making any sampled frame worse by more than the
margin (a real mistake acts on every frame alike). It stops when the frames are explained (both scores
at or above the noise floor, or identical) or nothing helps. To keep a round cheap, hypotheses that need
new U-Net runs are first screened on one sampled frame (the worst-explained, kept while it stays
unexplained, so screening after a mistake past the network reuses its U-Net outputs), and only the best few are
scored on all of them; the hypotheses after the network are scored on all frames straight away (their
U-Net outputs are cached). When the candidate's frame count differs from the reference's, the front-end
mistakes that change the count (and pairs of them) are tried first, and a count that matches names
the mistake.

**Registration.** When no catalogued mistake explains what is left, the candidate's crop-box region is
registered against the best simulation's (`cv2.findTransformECC`, affine; `cv2.phaseCorrelate` when
ECC does not converge) and the scale and shift are reported when aligning improves the box by the
margin: a geometric mistake the catalogue does not hold.

Mistakes below the noise floor (rounding instead of truncation moves pixels by one level: about
50 dB) are not searched for by default; pass `noise_floor_db=math.inf` for a candidate made on the
simulator's own runtime, where the reference itself is identical.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import cv2
import numpy as np

from ...errors import ParityError
from ...reference import audio, frames
from ...reference.dataset import Dataset, template_schedule
from ..verdict.metrics import PSNR_IDENTICAL, psnr

Box = tuple[int, int, int, int]
Generate = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (B,6,320,320), (B,32,16,16) -> (B,3,320,320)
Encode = Callable[[np.ndarray], np.ndarray]  # (B,1,80,16) -> (B,512)

# Where the search stops: a candidate within this PSNR of a simulation (crop box and outside it) is explained.
# Measured on sanders-mini with the golden weights (4 frames): ONNX Runtime fp32 against eager PyTorch 89.8 dB in
# the crop box; only the U-Net output rounded to fp16, 66.6 dB; while the audio mistakes move the box to 52-62 dB
# (silence 58.3, a one-row shift 59.8-61.7, no STFT centring 60.7) and the image mistakes below 52 dB. So 70 dB
# for fp32 candidates; pass FP16_NOISE_FLOOR_DB (or lower) for an fp16 port, where audio mistakes go unseen.
NOISE_FLOOR_DB = 70.0
FP16_NOISE_FLOOR_DB = 45.0
MARGIN_DB = 1.0
JPEG_QUALITIES = (50, 75, 90, 95)
SCREEN_TOP = 4  # pre-network hypotheses scored on all sampled frames after screening on one
FEATURE_SIZE = 512  # audio encoder output per window
INTERPOLATION_NAMES = {cv2.INTER_CUBIC: "bicubic", cv2.INTER_LINEAR: "bilinear", cv2.INTER_NEAREST: "nearest", cv2.INTER_AREA: "area"}
AUDIO_INPUTS = ("window", "zero", "constant", "tiled")
INPUT_SCALES = ("/255", "none", "[-1,1]")
MEL_RANGES = ("[-4,4]", "[0,4]")
ROUNDINGS = ("truncate", "round")


@dataclass(frozen=True)
class Variant:
    """One pipeline: the reference with some steps replaced. `Variant()` is the reference.

    The three audio mistakes that replace the U-Net audio input (silence, one constant window, one
    row tiled) are the values of one field, `audio_input`, since they exclude each other.
    """

    # audio front end: mel spectrogram and features
    no_center: bool = False  # STFT center=False: no n_fft/2 padding, T = 1 + (S - 800) // 200 mel frames
    other_pad_mode: bool = False  # the other STFT centre padding ('reflect' for 'constant' and back)
    symmetric_window: bool = False  # Hann window symmetric (scipy fftbins=False); the reference's is periodic
    no_preemphasis: bool = False
    power: bool = False  # |STFT|^2; the reference takes the magnitude |STFT|
    htk_mel: bool = False  # HTK mel scale; the reference's is Slaney
    ref_level_db: float = float(audio.REF_LEVEL_DB)  # subtracted after 20 log10
    mel_range: str = "[-4,4]"  # normalization: symmetric [-4, 4] (reference) or [0, 4]
    features_unpadded: bool = False  # first and last feature rows not repeated: N frames, not N + 2
    # U-Net audio input
    audio_input: str = "window"  # rows i-8..i+7 (reference); "zero"; "constant" (frame 0's for all); "tiled" (row i x 16)
    audio_shift: int = 0  # frame i reads rows i-8+k .. i+7+k
    # frame geometry
    template_offset: int = 0  # template schedule[i] + k (clipped to the templates)
    landmark_offset: int = 0  # the crop box of template t + k
    box_from_frame: int | None = None  # one template's crop box for every frame
    jpeg_inputs: int | None = None  # the template JPEG-compressed at this quality before use
    crop_interp: int = cv2.INTER_CUBIC
    jpeg_crop: int | None = None  # the 328 crop JPEG-compressed at this quality
    # U-Net image input
    mask_rect: tuple[int, int, int, int] | None = frames.MASK_RECT  # (x, y, w, h); None: masked half left unmasked
    input_channels_swapped: bool = False  # RGB, RGB
    input_halves_swapped: bool = False  # masked half first
    input_scale: str = "/255"  # "/255" (reference), "none" (0..255), "[-1,1]"
    # after the network
    rounding: str = "truncate"  # "round": floor(x * 255 + 0.5)
    output_channels_swapped: bool = False  # U-Net output read as RGB: the mouth's channels reversed
    jpeg_mouth: int | None = None  # the 320 mouth JPEG-compressed at this quality
    no_canvas: bool = False  # mouth resized straight onto the crop box, without the 328 canvas
    paste_interp: int = cv2.INTER_CUBIC
    paste_channels_swapped: bool = False  # the pasted region (the whole box) channel-reversed
    frame_channels_swapped: bool = False  # the whole output frame channel-reversed
    lossy_output: int | None = None  # the output frame JPEG-encoded (cv2.imencode) at this quality

    def __post_init__(self) -> None:
        for name, allowed in (("audio_input", AUDIO_INPUTS), ("input_scale", INPUT_SCALES), ("mel_range", MEL_RANGES), ("rounding", ROUNDINGS)):
            if getattr(self, name) not in allowed:
                raise ParityError(f"Variant.{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")

    @property
    def frontend(self) -> tuple[Any, ...]:
        """The front-end fields' values: the key of this variant's features."""
        return tuple(getattr(self, name) for name in FRONTEND_FIELDS)

    def differences(self) -> dict[str, Any]:
        """The fields that differ from the reference, with their values."""
        reference = Variant()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(reference, f.name)}


FRONTEND_FIELDS = ("no_center", "other_pad_mode", "symmetric_window", "no_preemphasis", "power", "htk_mel", "ref_level_db", "mel_range",
                   "features_unpadded")
COUNT_FIELDS = frozenset({"no_center", "features_unpadded"})  # the front-end fields that change the frame count
AFTER_NETWORK_FIELDS = frozenset({"rounding", "output_channels_swapped", "jpeg_mouth", "no_canvas", "paste_interp", "paste_channels_swapped",
                                  "frame_channels_swapped", "lossy_output"})


@dataclass(frozen=True)
class Hypothesis:
    """A named port mistake: a function Variant -> Variant that sets some fields."""

    name: str
    description: str
    category: str
    changes: tuple[tuple[str, Any], ...]

    def __call__(self, variant: Variant) -> Variant:
        return replace(variant, **dict(self.changes))

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.changes)

    @property
    def after_network(self) -> bool:
        """True when it changes only steps after the U-Net (its outputs are reused)."""
        return self.fields <= AFTER_NETWORK_FIELDS


def _catalogue() -> list[Hypothesis]:
    h: list[Hypothesis] = []

    def add(name: str, description: str, category: str, **changes: Any) -> None:
        h.append(Hypothesis(name, description, category, tuple(changes.items())))

    front = "audio front end"
    add("stft_no_center", "STFT with center=False (no n_fft/2 padding): 4 mel frames fewer, so fewer output frames", front, no_center=True)
    add("stft_other_pad_mode", "the other STFT centre padding (reflect for constant, or constant for reflect: older librosa)", front, other_pad_mode=True)
    add("symmetric_window", "symmetric Hann window instead of the periodic one librosa uses", front, symmetric_window=True)
    add("no_preemphasis", "pre-emphasis (y[n] = x[n] - 0.97 x[n-1]) skipped", front, no_preemphasis=True)
    add("power_spectrum", "power |STFT|^2 instead of the magnitude |STFT| before the mel filterbank", front, power=True)
    add("htk_mel", "HTK mel scale instead of librosa's Slaney scale", front, htk_mel=True)
    add("no_ref_level", "the -20 dB reference level not subtracted after 20 log10", front, ref_level_db=0.0)
    add("mel_range_0_4", "mel normalized to [0, 4] instead of the symmetric [-4, 4]", front, mel_range="[0,4]")
    add("features_unpadded", "features not padded (first and last rows not repeated): 2 frames fewer, every frame's audio one row on",
        front, features_unpadded=True)

    sound = "U-Net audio input"
    add("audio_zero", "U-Net audio input all zeros (silence)", sound, audio_input="zero")
    add("audio_constant", "one U-Net audio input (frame 0's) for every frame", sound, audio_input="constant")
    add("audio_tiled", "one feature row (row i) tiled over the 16-row audio window", sound, audio_input="tiled")
    for k in (1, -1, 2, -2):
        add(f"audio_shift_{k:+d}", f"audio window shifted by {k:+d} feature row{'s' if abs(k) > 1 else ''} (rows i{k - 8:+d}..i{k + 7:+d})", sound,
            audio_shift=k)

    geometry = "frame geometry"
    for k in (1, -1):
        add(f"template_offset_{k:+d}", f"template off by {k:+d}: frame i uses template schedule[i]{k:+d}", geometry, template_offset=k)
    for k in (1, -1):
        add(f"landmark_offset_{k:+d}", f"crop box from the landmarks of template t{k:+d}, not of the template used", geometry, landmark_offset=k)
    add("box_from_template_0", "one crop box, template 0's, for every frame", geometry, box_from_frame=0)
    for flag in (cv2.INTER_LINEAR, cv2.INTER_NEAREST, cv2.INTER_AREA):
        add(f"crop_{INTERPOLATION_NAMES[flag]}", f"crop resized to 328 x 328 with {INTERPOLATION_NAMES[flag]} instead of bicubic", geometry, crop_interp=flag)
    for q in JPEG_QUALITIES:
        add(f"jpeg_template_q{q}", f"template frames JPEG-compressed at quality {q} before cropping", geometry, jpeg_inputs=q)
    for q in JPEG_QUALITIES:
        add(f"jpeg_crop_q{q}", f"the 328 x 328 crop JPEG-compressed at quality {q}", geometry, jpeg_crop=q)

    image = "U-Net image input"
    add("input_rgb", "U-Net image input in RGB order (the network expects BGR)", image, input_channels_swapped=True)
    add("input_halves_swapped", "U-Net image input halves swapped: masked half first, real half second", image, input_halves_swapped=True)
    add("input_unscaled", "U-Net image input not divided by 255 (0..255)", image, input_scale="none")
    add("input_minus1_1", "U-Net image input scaled to [-1, 1] instead of [0, 1]", image, input_scale="[-1,1]")
    x, y, w, hh = frames.MASK_RECT
    add("mask_smaller_2", "mask rectangle 2 px smaller on each side", image, mask_rect=(x + 2, y + 2, w - 4, hh - 4))
    add("mask_smaller_3", "mask rectangle 3 px smaller on each side", image, mask_rect=(x + 3, y + 3, w - 6, hh - 6))
    add("mask_smaller_4", "mask rectangle 4 px smaller on each side", image, mask_rect=(x + 4, y + 4, w - 8, hh - 8))
    add("mask_smaller_5", "mask rectangle 5 px smaller on each side", image, mask_rect=(x + 5, y + 5, w - 10, hh - 10))
    add("mask_smaller_6", "mask rectangle 6 px smaller on each side", image, mask_rect=(x + 6, y + 6, w - 12, hh - 12))
    add("mask_larger_2", "mask rectangle 2 px larger on each side", image, mask_rect=(x - 2, y - 2, w + 4, hh + 4))
    add("mask_corners", "mask rectangle's (x, y, w, h) drawn as corners (5, 5)-(310, 305)", image, mask_rect=(x, y, w - x + 1, hh - y + 1))
    add("mask_wh_swapped", "mask rectangle with width and height swapped", image, mask_rect=(x, y, hh, w))
    add("mask_shifted_4", "mask rectangle shifted 4 px right and down", image, mask_rect=(x + 4, y + 4, w, hh))
    add("mask_missing", "masked half left unmasked (no black rectangle)", image, mask_rect=None)

    after = "after the network"
    add("rounding", "U-Net output rounded (floor(x * 255 + 0.5)) instead of truncated", after, rounding="round")
    add("output_rgb", "U-Net output read as RGB: the mouth's channels reversed before it is pasted", after, output_channels_swapped=True)
    for q in JPEG_QUALITIES:
        add(f"jpeg_mouth_q{q}", f"the 320 x 320 mouth JPEG-compressed at quality {q}", after, jpeg_mouth=q)
    add("no_canvas", "mouth resized straight onto the crop box without the 328 canvas", after, no_canvas=True)
    for flag in (cv2.INTER_LINEAR, cv2.INTER_NEAREST, cv2.INTER_AREA):
        add(f"paste_{INTERPOLATION_NAMES[flag]}", f"crop resized back to the box with {INTERPOLATION_NAMES[flag]} instead of bicubic", after, paste_interp=flag)
    add("paste_rgb", "pasted region channel-reversed (the crop box written in RGB)", after, paste_channels_swapped=True)

    output = "output frame"
    add("frame_rgb", "whole output frame written in RGB order", output, frame_channels_swapped=True)
    for q in JPEG_QUALITIES:
        add(f"lossy_output_q{q}", f"output frame JPEG-encoded at quality {q} (a lossy frame writer)", output, lossy_output=q)
    return h


HYPOTHESES: tuple[Hypothesis, ...] = tuple(_catalogue())
HYPOTHESES_BY_NAME: dict[str, Hypothesis] = {hyp.name: hyp for hyp in HYPOTHESES}


# ----- the simulator -----------------------------------------------------------------------------------


@dataclass
class SimulatedFrame:
    """The stages of one simulated output frame."""

    index: int
    template_index: int
    crop_box: Box
    crop_328: np.ndarray
    unet_input: np.ndarray
    unet_audio: np.ndarray
    unet_output: np.ndarray
    mouth: np.ndarray
    pasted_region: np.ndarray
    output: np.ndarray


@dataclass
class _FrontEnd:
    mel: np.ndarray
    windows: np.ndarray  # (N, 1, 80, 16)
    padded: bool
    encoded: dict[int, np.ndarray] = field(default_factory=dict)  # window -> (512,)

    @property
    def frame_count(self) -> int:
        return len(self.windows) + (2 if self.padded else 0)

    def window_of_row(self, row: int) -> int | None:
        """The encoder window that feature row `row` holds, None outside the features."""
        if not 0 <= row < self.frame_count:
            return None
        return min(max(row - 1, 0), len(self.windows) - 1) if self.padded else row


@dataclass
class _Prepared:
    index: int
    template_index: int
    image: np.ndarray
    box: Box
    crop: np.ndarray
    unet_input: np.ndarray
    unet_audio: np.ndarray
    key: bytes


class Simulator:
    """Output frames of any `Variant` of the reference pipeline on one dataset and one clip.

    `generate((B,6,320,320), (B,32,16,16)) -> (B,3,320,320)` and `encode((B,1,80,16)) -> (B,512)` are
    the networks (a backend's `generate`/`encode_audio`, or a reference pipeline's wrapped to batches);
    `pad_mode` is the reference's STFT centre padding.
    """

    def __init__(self, dataset: Dataset, pcm: np.ndarray, generate: Generate, encode: Encode, pad_mode: str = audio.DEFAULT_PAD_MODE,
                 batch_size: int = 4):
        if pad_mode not in audio.PAD_MODES:
            raise ParityError(f"unknown STFT pad mode {pad_mode!r}: use one of {', '.join(audio.PAD_MODES)}")
        self.dataset = dataset
        self.pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        self.generate = generate
        self.encode = encode
        self.pad_mode = pad_mode
        self.batch_size = max(1, batch_size)
        self.unet_runs = 0
        self.unet_seconds = 0.0
        self._frontends: dict[tuple[Any, ...], _FrontEnd] = {}
        self._outputs: dict[bytes, np.ndarray] = {}
        self._images: dict[tuple[int, int | None], np.ndarray] = {}
        self._schedules: dict[int, list[int]] = {}

    # ----- counts and geometry -----
    def frame_count(self, variant: Variant) -> int:
        """The number of output frames this variant makes for the clip."""
        return self._frontend(variant).frame_count

    def template_index(self, variant: Variant, index: int) -> int:
        count = self.frame_count(variant)
        if count not in self._schedules:
            self._schedules[count] = template_schedule(count, self.dataset.template_count)
        return self._clip_template(self._schedules[count][index] + variant.template_offset)

    def box(self, variant: Variant, index: int) -> Box:
        """The crop box the variant pastes frame `index` into."""
        if variant.box_from_frame is not None:
            return self.dataset.templates[self._clip_template(variant.box_from_frame)].box
        return self.dataset.templates[self._clip_template(self.template_index(variant, index) + variant.landmark_offset)].box

    # ----- frames -----
    def frames(self, variant: Variant, indices: Iterable[int]) -> dict[int, np.ndarray]:
        """The variant's output frames at `indices`."""
        return {s.index: s.output for s in self.stages(variant, indices)}

    def stages(self, variant: Variant, indices: Iterable[int]) -> list[SimulatedFrame]:
        """The variant's stages of the output frames at `indices`; U-Net runs only for inputs it has not seen."""
        prepared = [self._prepare(variant, i) for i in indices]
        self._run_unet(prepared)
        return [self._finish(variant, p) for p in prepared]

    def _clip_template(self, t: int) -> int:
        return min(max(t, 0), self.dataset.template_count - 1)

    def _image(self, template: int, jpeg: int | None) -> np.ndarray:
        key = (template, jpeg)
        if key not in self._images:
            image = self.dataset.templates[template].read_image() if jpeg is None else _jpeg(self._image(template, None), jpeg)
            image.setflags(write=False)
            self._images[key] = image
        return self._images[key]

    def _prepare(self, v: Variant, index: int) -> _Prepared:
        count = self.frame_count(v)
        if not 0 <= index < count:
            raise ParityError(f"frame {index}: outside the {count} frames this variant makes")
        t = self.template_index(v, index)
        image = self._image(t, v.jpeg_inputs)
        box = self.box(v, index)
        xmin, ymin, xmax, ymax = box
        crop = cv2.resize(image[ymin:ymax, xmin:xmax], (frames.CROP_SIZE, frames.CROP_SIZE), interpolation=v.crop_interp)
        if v.jpeg_crop is not None:
            crop = _jpeg(crop, v.jpeg_crop)
        unet_input = _unet_input(crop, v)
        unet_audio = self._unet_audio(v, index)
        key = hashlib.sha1(unet_input.tobytes() + unet_audio.tobytes()).digest()
        return _Prepared(index, t, image, box, crop, unet_input, unet_audio, key)

    def _run_unet(self, prepared: Sequence[_Prepared]) -> None:
        missing: dict[bytes, _Prepared] = {}
        for p in prepared:
            if p.key not in self._outputs and p.key not in missing:
                missing[p.key] = p
        todo = list(missing.values())
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            began = time.perf_counter()
            outputs = np.asarray(self.generate(np.stack([p.unet_input for p in batch]), np.stack([p.unet_audio for p in batch])), dtype=np.float32)
            self.unet_seconds += time.perf_counter() - began
            self.unet_runs += len(batch)
            for p, out in zip(batch, outputs):
                out.setflags(write=False)
                self._outputs[p.key] = out

    def _finish(self, v: Variant, p: _Prepared) -> SimulatedFrame:
        output = self._outputs[p.key]
        if v.rounding == "truncate":
            mouth = frames.mouth_from_output(output)
        else:
            mouth = np.clip(np.floor(output.transpose(1, 2, 0) * np.float32(255) + np.float32(0.5)), 0, 255).astype(np.uint8)
        if v.output_channels_swapped:
            mouth = np.ascontiguousarray(mouth[..., ::-1])
        if v.jpeg_mouth is not None:
            mouth = _jpeg(mouth, v.jpeg_mouth)
        xmin, ymin, xmax, ymax = p.box
        if v.no_canvas:
            region = cv2.resize(mouth, (xmax - xmin, ymax - ymin), interpolation=v.paste_interp)
        else:
            restored = p.crop.copy()
            restored[frames.INNER[0] : frames.INNER[1], frames.INNER[0] : frames.INNER[1]] = mouth
            region = cv2.resize(restored, (xmax - xmin, ymax - ymin), interpolation=v.paste_interp)
        if v.paste_channels_swapped:
            region = np.ascontiguousarray(region[..., ::-1])
        out = frames.paste(p.image, region, p.box)
        if v.frame_channels_swapped:
            out = np.ascontiguousarray(out[..., ::-1])
        if v.lossy_output is not None:
            out = _jpeg(out, v.lossy_output)
        return SimulatedFrame(p.index, p.template_index, p.box, p.crop, p.unet_input, p.unet_audio, output, mouth, region, out)

    # ----- audio -----
    def _frontend(self, v: Variant) -> _FrontEnd:
        key = v.frontend
        if key not in self._frontends:
            mel = variant_mel(self.pcm, v, self.pad_mode)
            self._frontends[key] = _FrontEnd(mel, audio.mel_windows(mel), padded=not v.features_unpadded)
        return self._frontends[key]

    def _rows(self, fe: _FrontEnd, rows: Sequence[int]) -> np.ndarray:
        """Feature rows `rows` of the front end (zeros outside), encoding the windows not encoded yet."""
        windows = [fe.window_of_row(r) for r in rows]
        # whole encoder batches, as the reference batches them (64 windows from 0): a runtime's output can
        # depend on the batch it runs in by float32 ulps, and the reference's features are reproduced exactly
        size = audio.ENCODER_BATCH
        for batch in sorted({w // size for w in windows if w is not None and w not in fe.encoded}):
            start = batch * size
            encoded = audio.encode_windows(self.encode, fe.windows[start : start + size], size)
            for number, vector in enumerate(encoded, start):
                fe.encoded[number] = vector
        out = np.zeros((len(rows), FEATURE_SIZE), dtype=np.float32)
        for r, window in enumerate(windows):
            if window is not None:
                out[r] = fe.encoded[window]
        return out

    def _unet_audio(self, v: Variant, index: int) -> np.ndarray:
        fe = self._frontend(v)
        half = audio.UNET_AUDIO_ROWS // 2
        if v.audio_input == "zero":
            rows = np.zeros((audio.UNET_AUDIO_ROWS, FEATURE_SIZE), dtype=np.float32)
        elif v.audio_input == "tiled":
            rows = np.repeat(self._rows(fe, [index + v.audio_shift]), audio.UNET_AUDIO_ROWS, axis=0)
        else:
            centre = (0 if v.audio_input == "constant" else index) + v.audio_shift
            rows = self._rows(fe, list(range(centre - half, centre + half)))
        return np.ascontiguousarray(rows.reshape(32, 16, 16))


def variant_mel(pcm: np.ndarray, v: Variant, pad_mode: str = audio.DEFAULT_PAD_MODE) -> np.ndarray:
    """The normalized log-mel `(T, 80)` of `pcm` with the variant's front end (the reference's for `Variant()`)."""
    import librosa

    if pad_mode not in audio.PAD_MODES:
        raise ParityError(f"unknown STFT pad mode {pad_mode!r}: use one of {', '.join(audio.PAD_MODES)}")
    if v.other_pad_mode:
        pad_mode = next(m for m in audio.PAD_MODES if m != pad_mode)
    y = pcm if v.no_preemphasis else audio.preemphasis(pcm)
    window: Any = "hann"
    if v.symmetric_window:
        from scipy.signal import get_window

        window = get_window("hann", audio.WIN_LENGTH, fftbins=False)
    spectrum = librosa.stft(y=y, n_fft=audio.N_FFT, hop_length=audio.HOP_LENGTH, win_length=audio.WIN_LENGTH, window=window, center=not v.no_center,
                            pad_mode=pad_mode)  # type: ignore[arg-type]
    magnitude = np.abs(spectrum)
    if v.power:
        magnitude = magnitude**2
    if v.htk_mel:
        filterbank = librosa.filters.mel(sr=audio.SAMPLE_RATE, n_fft=audio.N_FFT, n_mels=audio.N_MELS, fmin=audio.FMIN, fmax=audio.FMAX, htk=True)
    else:
        filterbank = audio.mel_filterbank()
    mel = np.dot(filterbank, magnitude)
    db = 20 * np.log10(np.maximum(1e-5, mel)) - v.ref_level_db
    top = audio.MAX_ABS_VALUE
    if v.mel_range == "[-4,4]":
        normalized = np.clip((2 * top) * ((db - audio.MIN_LEVEL_DB) / -audio.MIN_LEVEL_DB) - top, -top, top)
    else:
        normalized = np.clip(top * ((db - audio.MIN_LEVEL_DB) / -audio.MIN_LEVEL_DB), 0, top)
    if mel.shape[1] < audio.WINDOW_FRAMES:
        raise ParityError(f"audio too short for this front end: {mel.shape[1]} mel frames, a window needs {audio.WINDOW_FRAMES}")
    return normalized.T


def _unet_input(crop: np.ndarray, v: Variant) -> np.ndarray:
    real = crop[frames.INNER[0] : frames.INNER[1], frames.INNER[0] : frames.INNER[1]].copy()
    masked = real.copy()
    if v.mask_rect is not None:
        cv2.rectangle(masked, v.mask_rect, (0, 0, 0), -1)
    halves = (masked, real) if v.input_halves_swapped else (real, masked)
    planes_list: list[np.ndarray] = []
    for half in halves:
        channels = list(cv2.split(half))
        planes_list.extend(channels[::-1] if v.input_channels_swapped else channels)
    planes = np.stack(planes_list)
    if v.input_scale == "/255":
        return np.divide(planes, np.float32(255.0), out=np.empty(planes.shape, np.float32))
    if v.input_scale == "none":
        return planes.astype(np.float32)
    return np.ascontiguousarray(planes.astype(np.float32) / np.float32(127.5) - np.float32(1.0))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ParityError(f"OpenCV could not JPEG-encode a {image.shape} image")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ParityError(f"OpenCV could not decode its own JPEG of a {image.shape} image")
    return np.asarray(decoded)


# ----- scores -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """Candidate against a simulation over the sampled frames: squared error and pixel count inside the
    crop boxes and outside them."""

    box_sse: float
    box_count: int
    outside_sse: float
    outside_count: int

    @property
    def box_db(self) -> float:
        return psnr(self.box_sse / max(1, self.box_count))

    @property
    def outside_db(self) -> float:
        return psnr(self.outside_sse / self.outside_count) if self.outside_count else PSNR_IDENTICAL

    @property
    def db(self) -> float:
        """The score searched on: PSNR of the mean of the two regions' mean squared errors, capped at 100 dB."""
        box = self.box_sse / max(1, self.box_count)
        outside = self.outside_sse / self.outside_count if self.outside_count else 0.0
        return psnr((box + outside) / 2)

    @property
    def identical(self) -> bool:
        return self.box_sse == 0 and self.outside_sse == 0

    def explained(self, noise_floor_db: float) -> bool:
        return self.identical or min(self.box_db, self.outside_db) >= noise_floor_db

    def __add__(self, other: Score) -> Score:
        return Score(self.box_sse + other.box_sse, self.box_count + other.box_count, self.outside_sse + other.outside_sse,
                     self.outside_count + other.outside_count)

    def describe(self) -> str:
        return f"crop box {_db(self.box_db)}, outside it {_db(self.outside_db)}"


def _db(value: float) -> str:
    return "identical" if value >= PSNR_IDENTICAL else f"{value:.1f} dB"


def frame_score(candidate: np.ndarray, simulated: np.ndarray, box: Box) -> Score:
    if candidate.shape != simulated.shape:
        raise ParityError(f"candidate frame is {candidate.shape}, the simulation {simulated.shape}")
    xmin, ymin, xmax, ymax = box
    total = float(cv2.norm(candidate, simulated, cv2.NORM_L2SQR))
    inside = float(cv2.norm(candidate[ymin:ymax, xmin:xmax], simulated[ymin:ymax, xmin:xmax], cv2.NORM_L2SQR))
    box_count = (ymax - ymin) * (xmax - xmin) * candidate.shape[2]
    return Score(inside, box_count, max(0.0, total - inside), candidate.size - box_count)


def _sum(scores: Iterable[Score]) -> Score:
    total = Score(0.0, 0, 0.0, 0)
    for s in scores:
        total = total + s
    return total


# ----- the explanation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """An accepted hypothesis, with the score before and after it was applied."""

    hypothesis: Hypothesis
    before: Score
    after: Score
    evidence: str

    @property
    def name(self) -> str:
        return self.hypothesis.name


@dataclass(frozen=True)
class Registration:
    """The candidate's crop-box region aligned to the best simulation's (median over the sampled frames):
    candidate(W x) = simulation(x), W = scale about the box centre, then shift."""

    scale: tuple[float, float]  # x, y
    shift: tuple[float, float]  # of the box centre, px
    rotation_deg: float
    method: str  # "ecc-affine" or "phase-correlation"
    before_db: float
    after_db: float
    frames: int

    def describe(self) -> str:
        return (f"the candidate's crop box is the simulation's scaled by {self.scale[0]:.4f} x {self.scale[1]:.4f}, rotated {self.rotation_deg:.2f} deg, "
                f"and shifted by ({self.shift[0]:+.2f}, {self.shift[1]:+.2f}) px ({self.method}, {self.frames} frame(s)): aligning it raises the box "
                f"from {_db(self.before_db)} to {_db(self.after_db)}; a geometric mistake the catalogue does not hold")


@dataclass(frozen=True)
class Explanation:
    findings: tuple[Finding, ...]
    variant: Variant
    initial: Score  # candidate vs reference
    final: Score  # candidate vs the accepted variant
    per_frame: dict[int, Score]  # final, per sampled frame
    explained: bool
    noise_floor_db: float
    margin_db: float
    sample: tuple[int, ...]
    candidate_frame_count: int | None
    reference_frame_count: int
    simulated_frame_count: int
    unexplained: tuple[str, ...]
    registration: Registration | None
    evaluations: int  # variants scored
    unet_runs: int  # U-Net runs this explanation needed (not cached before)
    seconds: float

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.findings]

    @property
    def identical(self) -> bool:
        return self.final.identical

    def summary(self) -> str:
        lines = [f"as-is against the reference: {self.initial.describe()} over frames {', '.join(map(str, self.sample))}"]
        if self.candidate_frame_count is not None:
            lines.append(f"frame count: candidate {self.candidate_frame_count}, reference {self.reference_frame_count}, "
                         f"explanation {self.simulated_frame_count}")
        if not self.findings:
            lines.append("no catalogued mistake applies" if self.explained else "no catalogued mistake explains the difference")
        for f in self.findings:
            lines.append(f"- {f.name} ({f.hypothesis.category}): {f.hypothesis.description}; {f.evidence}")
        state = "explained" if self.explained else "not explained"
        lines.append(f"{state}: {self.final.describe()} (noise floor {self.noise_floor_db:g} dB)")
        lines.extend(f"unexplained: {u}" for u in self.unexplained)
        lines.append(f"{self.evaluations} variants scored, {self.unet_runs} U-Net runs, {self.seconds:.1f} s")
        return "\n".join(lines)


class _Search:
    def __init__(self, simulator: Simulator, candidate: Mapping[int, np.ndarray], boxes: Mapping[int, Box], sample: Sequence[int]):
        self.simulator, self.candidate, self.boxes, self.sample = simulator, candidate, boxes, list(sample)
        self.evaluations = 0
        self._screen: int | None = None
        self._scores: dict[tuple[Variant, int], Score] = {}

    def screen_frame(self, per_frame: Mapping[int, Score], noise_floor_db: float) -> int:
        """The sampled frame hypotheses are screened on: the worst-explained one (it carries the most evidence),
        kept from round to round while it is unexplained, so that after a mistake past the network is accepted
        the next round's screening reuses the U-Net outputs of this one."""
        if self._screen is None or per_frame[self._screen].explained(noise_floor_db):
            self._screen = min(per_frame, key=lambda i: per_frame[i].db)
        return self._screen

    def score(self, variant: Variant, indices: Sequence[int] | None = None) -> dict[int, Score] | None:
        """Per-frame scores of the variant at `indices` (all sampled by default); None when it cannot make them."""
        indices = self.sample if indices is None else list(indices)
        if max(indices) >= self.simulator.frame_count(variant):
            return None
        todo = [i for i in indices if (variant, i) not in self._scores]
        if todo:
            self.evaluations += 1
            for i, frame in self.simulator.frames(variant, todo).items():
                self._scores[(variant, i)] = frame_score(self.candidate[i], frame, self.boxes[i])
        return {i: self._scores[(variant, i)] for i in indices}


def explain(simulator: Simulator, candidate_frames: Mapping[int, np.ndarray], boxes: Mapping[int, Box] | None = None,
            sample: Sequence[int] | None = None, noise_floor_db: float = NOISE_FLOOR_DB, candidate_frame_count: int | None = None,
            margin_db: float = MARGIN_DB, max_rounds: int = 4, hypotheses: Sequence[Hypothesis] = HYPOTHESES, screen_top: int = SCREEN_TOP,
            register: bool = True, prior: Sequence[tuple[Hypothesis, str]] = ()) -> Explanation:
    """Which catalogued mistakes, applied to the reference, make the candidate's frames (greedy search).

    `candidate_frames`: output index -> BGR uint8 frame; `sample`: the indices to use (default: up to 4
    spread over the candidate's); `boxes`: index -> crop box to score inside (default: the reference's);
    `candidate_frame_count`: how many frames the candidate made, when known; `prior`: mistakes other
    evidence already established, with that evidence (e.g. the JPEG quality in the files' own tables):
    applied first, so the search judges the rest against frames made the same way.
    """
    began = time.perf_counter()
    runs_before = simulator.unet_runs
    reference = Variant()
    reference_count = simulator.frame_count(reference)
    sample = _sample(candidate_frames, sample)
    limit = min(reference_count, candidate_frame_count or reference_count)
    if max(sample) >= limit:
        raise ParityError(f"sampled frame {max(sample)} is outside the {limit} frames both the reference and the candidate make; sample earlier frames")
    width, height = simulator.dataset.frame_size
    for i in sample:
        shape = np.shape(candidate_frames[i])
        if shape != (height, width, 3):
            raise ParityError(f"candidate frame {i} is {shape}, the templates are {(height, width, 3)}: a frame of another size cannot be simulated")
    frames_in = {i: np.ascontiguousarray(candidate_frames[i], dtype=np.uint8) for i in sample}
    boxes = {i: simulator.box(reference, i) for i in sample} if boxes is None else {i: tuple(boxes[i]) for i in sample}  # type: ignore[misc]
    search = _Search(simulator, frames_in, boxes, sample)

    current = reference
    per_frame = search.score(current)
    assert per_frame is not None
    initial = current_score = _sum(per_frame.values())
    findings: list[Finding] = []
    used: set[str] = set()
    unexplained: list[str] = []
    count_locked = False

    def accept(h: Hypothesis, variant: Variant, scores: dict[int, Score], extra: str = "") -> None:
        nonlocal current, current_score, per_frame
        after = _sum(scores.values())
        findings.append(Finding(h, current_score, after, extra + _evidence(current_score, after)))
        current, current_score, per_frame = variant, after, scores
        used.update(h.fields)

    # frame count first: a front-end mistake whose count matches the candidate's names itself
    if candidate_frame_count is not None and candidate_frame_count != reference_count:
        count_locked = True
        matching = []
        changers = [h for h in hypotheses if h.fields & COUNT_FIELDS]
        options: list[tuple[Hypothesis, ...]] = [(h,) for h in changers]
        options += [(a, b) for n, a in enumerate(changers) for b in changers[n + 1 :] if not a.fields & b.fields]
        for combo in options:
            variant = reference
            for h in combo:
                variant = h(variant)
            if simulator.frame_count(variant) == candidate_frame_count:
                scores = search.score(variant)
                if scores is not None:
                    matching.append((_sum(scores.values()).db, combo, variant, scores))
        if matching:
            matching.sort(key=lambda m: -m[0])
            combo = matching[0][1]
            for h in combo:
                partial = h(current)
                part_scores = search.score(partial)
                assert part_scores is not None  # each count mistake only removes frames: alone it makes the pair's sampled frames too
                count_note = (f"makes {simulator.frame_count(partial)} frames (the reference {reference_count}, the candidate "
                              f"{candidate_frame_count}); ")
                if _sum(part_scores.values()).db - current_score.db < margin_db:
                    count_note += (f"named by the count alone: the frames change by under {margin_db:g} dB, so they cannot tell it from "
                                   "frames dropped at the tail; ")
                accept(h, partial, part_scores, count_note)
        else:
            unexplained.append(f"frame count: the candidate makes {candidate_frame_count} frames, the reference {reference_count}, "
                               "and no catalogued front-end mistake (or pair) makes that many")

    for h, why in prior:
        if h.fields & used:
            continue
        scores = search.score(h(current))
        if scores is not None:
            accept(h, h(current), scores, f"{why}; ")

    for _ in range(max_rounds):
        if current_score.explained(noise_floor_db):
            break
        choice = _round(search, current, current_score, per_frame, hypotheses, used, count_locked, margin_db, noise_floor_db, screen_top)
        if choice is None:
            break
        accept(*choice)

    explained = current_score.explained(noise_floor_db)
    registration = None
    if not explained:
        if current_score.box_db < noise_floor_db:
            unexplained.append(f"inside the crop box: {_db(current_score.box_db)} against the best simulation, below the {noise_floor_db:g} dB floor")
        if current_score.outside_db < noise_floor_db:
            unexplained.append(f"outside the crop box: {_db(current_score.outside_db)} against the best simulation, below the {noise_floor_db:g} dB floor")
        if register and current_score.box_db < noise_floor_db:
            registration = _register(simulator, current, frames_in, boxes, sample, margin_db)
            if registration is not None:
                unexplained.append(registration.describe())
    return Explanation(
        findings=tuple(findings), variant=current, initial=initial, final=current_score, per_frame=dict(per_frame), explained=explained,
        noise_floor_db=noise_floor_db, margin_db=margin_db, sample=tuple(sample), candidate_frame_count=candidate_frame_count,
        reference_frame_count=reference_count, simulated_frame_count=simulator.frame_count(current), unexplained=tuple(unexplained),
        registration=registration, evaluations=search.evaluations, unet_runs=simulator.unet_runs - runs_before, seconds=time.perf_counter() - began,
    )


def _round(search: _Search, current: Variant, current_score: Score, per_frame: dict[int, Score], hypotheses: Sequence[Hypothesis], used: set[str],
           count_locked: bool, margin_db: float, noise_floor_db: float, screen_top: int) -> tuple[Hypothesis, Variant, dict[int, Score]] | None:
    """The best hypothesis on top of `current` that improves the score by the margin, or None."""
    simulator = search.simulator
    count = simulator.frame_count(current)
    options = []
    for h in hypotheses:
        if h.fields & used:
            continue
        variant = h(current)
        if variant == current or (count_locked and simulator.frame_count(variant) != count):
            continue
        options.append((h, variant))

    scored: list[tuple[Hypothesis, Variant, dict[int, Score]]] = []
    for h, variant in options:
        if h.after_network:
            scores = search.score(variant)
            if scores is not None:
                scored.append((h, variant, scores))
    best_after = max(scored, key=lambda s: _sum(s[2].values()).db, default=None)
    if best_after is None or not _sum(best_after[2].values()).explained(noise_floor_db):
        worst = search.screen_frame(per_frame, noise_floor_db)
        screened = []
        for h, variant in options:
            if h.after_network:
                continue
            scores = search.score(variant, [worst])
            if scores is not None and scores[worst].db >= per_frame[worst].db + margin_db:
                screened.append((scores[worst].db, h, variant))
        screened.sort(key=lambda s: -s[0])
        for _, h, variant in screened[:screen_top]:
            scores = search.score(variant)
            if scores is not None:
                scored.append((h, variant, scores))
    good = [(h, variant, scores) for h, variant, scores in scored
            if _sum(scores.values()).db >= current_score.db + margin_db and all(scores[i].db >= per_frame[i].db - margin_db for i in per_frame)]
    return max(good, key=lambda s: _sum(s[2].values()).db, default=None)


def _evidence(before: Score, after: Score) -> str:
    parts = []
    if after.box_db != before.box_db:
        parts.append(f"explains the crop box: {_db(after.box_db)} simulated vs {_db(before.box_db)} as-is")
    if after.outside_db != before.outside_db:
        parts.append(f"outside the box: {_db(after.outside_db)} simulated vs {_db(before.outside_db)} as-is")
    return "; ".join(parts) or "no change in score"


def _sample(candidate_frames: Mapping[int, np.ndarray], sample: Sequence[int] | None) -> list[int]:
    if not candidate_frames:
        raise ParityError("no candidate frames to explain")
    if sample is None:
        indices = sorted(candidate_frames)
        picks = np.linspace(0, len(indices) - 1, min(4, len(indices))).round().astype(int)
        return sorted({indices[p] for p in picks})
    sample = sorted({int(i) for i in sample})
    if not sample:
        raise ParityError("the sample of frames to explain is empty")
    absent = [i for i in sample if i not in candidate_frames]
    if absent:
        raise ParityError(f"sampled frame {absent[0]} is not among the candidate frames given")
    return sample


# ----- registration fallback ---------------------------------------------------------------------------


def _register(simulator: Simulator, variant: Variant, candidate: Mapping[int, np.ndarray], boxes: Mapping[int, Box], sample: Sequence[int],
              margin_db: float) -> Registration | None:
    """Align each sampled frame's candidate box to the simulation's; the median transform when aligning helps by the margin."""
    simulated = simulator.frames(variant, sample)
    found = []
    before = after = Score(0.0, 0, 0.0, 0)
    for i in sample:
        xmin, ymin, xmax, ymax = boxes[i]
        cand = candidate[i][ymin:ymax, xmin:xmax]
        sim = np.ascontiguousarray(simulated[i][ymin:ymax, xmin:xmax])
        result = _align(cand, sim)
        if result is None:
            continue
        warp, method = result
        aligned = cv2.warpAffine(cand, warp, (xmax - xmin, ymax - ymin), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        border = max(2, (xmax - xmin) // 20)  # the warp's edge pixels are extrapolated: leave them out of both scores
        inner = (slice(border, -border), slice(border, -border))
        n = aligned[inner].size
        before = before + Score(float(cv2.norm(np.ascontiguousarray(cand[inner]), np.ascontiguousarray(sim[inner]), cv2.NORM_L2SQR)), n, 0.0, 0)
        after = after + Score(float(cv2.norm(np.ascontiguousarray(aligned[inner]), np.ascontiguousarray(sim[inner]), cv2.NORM_L2SQR)), n, 0.0, 0)
        found.append((warp, method, (xmax - xmin) / 2, (ymax - ymin) / 2))
    if not found or after.box_db < before.box_db + margin_db:
        return None
    scales_x, scales_y, rotations, shifts_x, shifts_y = [], [], [], [], []
    for warp, _, cx, cy in found:
        a = warp[:, :2].astype(np.float64)
        scales_x.append(float(np.hypot(a[0, 0], a[1, 0])))
        scales_y.append(float(np.hypot(a[0, 1], a[1, 1])))
        rotations.append(float(np.degrees(np.arctan2(a[1, 0], a[0, 0]))))
        centre = a @ np.array([cx, cy]) + warp[:, 2]
        shifts_x.append(float(centre[0] - cx))
        shifts_y.append(float(centre[1] - cy))
    methods = {m for _, m, _, _ in found}
    return Registration(
        scale=(float(np.median(scales_x)), float(np.median(scales_y))), shift=(float(np.median(shifts_x)), float(np.median(shifts_y))),
        rotation_deg=float(np.median(rotations)), method="ecc-affine" if methods == {"ecc-affine"} else "/".join(sorted(methods)),
        before_db=before.box_db, after_db=after.box_db, frames=len(found),
    )


def _align(candidate: np.ndarray, simulated: np.ndarray) -> tuple[np.ndarray, str] | None:
    """The 2 x 3 warp W with candidate(W x) ~ simulated(x): ECC affine, else a phase-correlation shift."""
    cand = cv2.cvtColor(candidate, cv2.COLOR_BGR2GRAY).astype(np.float32)
    sim = cv2.cvtColor(simulated, cv2.COLOR_BGR2GRAY).astype(np.float32)
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    try:
        _, found = cv2.findTransformECC(sim, cand, warp, cv2.MOTION_AFFINE, criteria, None, 5)  # type: ignore[call-overload]
        return np.asarray(found, dtype=np.float32), "ecc-affine"
    except cv2.error:
        pass
    window = cv2.createHanningWindow(sim.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(sim, cand, window)
    if response < 0.05:
        return None
    return np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32), "phase-correlation"
