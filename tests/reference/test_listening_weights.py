"""Listening weights: the audio path they are built from (fast), and, on sanders-mini, a mouth that hears the speech
and lip sync measured from frames they make (slow: the weights are made once per cache, about a minute)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.lip_sync import measure_lip_sync, mouth_motion
from synctalk_parity.models.fixtures import fixture_unet
from synctalk_parity.reference import audio as A
from synctalk_parity.reference import frames as F
from synctalk_parity.reference import listening_weights as L
from synctalk_parity.reference.dataset import open_dataset

from ..conftest import one_maker


@pytest.fixture(scope="module")
def speech(golden):
    return A.load_audio(golden / "talk_hb_10s.wav")


@pytest.fixture(scope="module")
def encoder():
    with torch.inference_mode():
        return L.build_audio_encoder()


def encode(encoder, pcm: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return A.pad_features(A.encode_windows(lambda w: encoder(torch.from_numpy(w)).numpy(), A.mel_windows(A.mel_spectrogram(pcm))))


def test_the_audio_encoder_writes_loudness_and_spectral_shape_into_uniform_feature_halves(encoder, speech):
    features = encode(encoder, speech)
    loudness, shape = features[:, :256], features[:, 256:]
    assert np.ptp(loudness, axis=1).max() == 0 and np.ptp(shape, axis=1).max() == 0  # uniform maps in the U-Net's audio input
    assert loudness.min() >= 0 and loudness.max() <= 1 and loudness[:, 0].std() > 0.05  # it varies with the speech
    silent = encode(encoder, np.zeros(16000, np.float32))
    assert np.all(silent[:, 0] == 0) and np.allclose(silent[:, 256], 1.0)


def test_the_unet_audio_branch_computes_the_opening_the_calibration_describes(encoder, speech, golden):
    opening = L.calibrate_opening(encoder, golden / "talk_hb_10s.wav")
    features = encode(encoder, speech)
    expected = opening.of(features)
    assert np.mean(expected == 0) >= 0.25 and np.mean(expected > 0.5) > 0.2  # closed in pauses, open on syllables
    builder = L._UNetBuilder.__new__(L._UNetBuilder)
    builder.net, builder.opening = fixture_unet(seed=0), opening
    with torch.inference_mode():
        builder._build_audio_branch()
        windows = torch.from_numpy(np.stack([A.unet_audio_window(features, i) for i in range(len(features))]))
        branch = builder.net.audio_model(windows).numpy()
    # channel 0 of the 10 x 10 map is the opening wherever the mouth can be: rows 1-8, columns 0-8 (column 0 copied in)
    assert np.abs(branch[:, 0, 1:9, 0:9] - expected[:, None, None]).max() < 1e-5


def test_a_dataset_without_synctalk_lip_points_is_refused_with_its_file():
    points = np.zeros((110, 2), np.float32)
    points[:, 0], points[:, 1] = 100, 100
    points[1], points[31], points[52] = (50, 80), (150, 80), (100, 60)
    with pytest.raises(ParityError, match=r"0\.lms: the lip points \(90-109"):
        L.lip_frame(points, F.crop_box(points), "0.lms")  # every lip point at one place: no mouth


def test_the_opening_is_drawn_between_the_lips_and_grows_with_a():
    lips = L.LipFrame(centre=(160.0, 120.0), along=(1.0, 0.0), width=110.0)
    grid = np.arange(320.0)
    level = L.mouth_level(lips, grid, grid)
    assert level[120, 160] == 1.0 and level.min() == -1.0
    areas = [int((level + a > 1).sum()) for a in (0.0, 0.25, 0.5, 1.0)]
    assert areas[0] == 0 and areas[1] < areas[2] < areas[3]
    rows = np.where((level + 1.0 > 1).any(axis=1))[0]
    assert rows.min() < 120 < rows.max() and 120 - rows.min() < rows.max() - 120  # more of it below the lips' line


def test_write_refuses_a_folder_holding_other_files(tmp_path, sanders):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ParityError, match="holds other files"):
        L.write_listening_weights(sanders, sanders / "talk_hb.wav", tmp_path)


# ----- with the weights, on sanders-mini ---------------------------------------------------------------

TEMPLATES = 2  # frames alternate templates 1, 0, 1, ...: every (template, audio window) pair a test needs fits in a small table
CLIP_FRAMES = 40


@pytest.fixture(scope="module")
def weights(sanders, session_cache):
    # made once per cache: `parity weights`'s test (tests/cli/test_weights.py) makes the same ones, perhaps on the
    # other worker at the same time; the lock lets one make them while the other waits and finds them (~52 s each)
    with one_maker(session_cache, "sanders-mini listening weights"):
        return L.listening_weights(sanders, sanders / "talk_hb.wav")


@pytest.fixture(scope="module")
def two_templates(sanders, tmp_path_factory):
    """sanders-mini's first two templates as a dataset of their own."""
    folder = tmp_path_factory.mktemp("two-templates")
    for sub, suffix in (("full_body_img", ".jpg"), ("landmarks", ".lms")):
        (folder / sub).mkdir()
        for i in range(TEMPLATES):
            shutil.copyfile(sanders / sub / f"{i}{suffix}", folder / sub / f"{i}{suffix}")
    return open_dataset(folder)


class Frames:
    """Output frames of the reference pipeline with these weights, any audio window for any frame, U-Net outputs cached.

    The U-Net runs as the reference runs it in verdicts, the `fast` execution (`reference/execution.py`: traced
    channels-last and frozen, within 3.2e-6 of eager, about half eager's CPU time here); the features of a PCM clip are
    computed once (the mel and the encoder took ~6 s a clip on one thread, and most tests read the speech's)."""

    def __init__(self, weights, dataset):
        from synctalk_parity.models.checkpoints import load_audio_encoder, load_unet
        from synctalk_parity.reference.execution import unet_runner

        self.unet, self.encoder = load_unet(weights[0]), load_audio_encoder(weights[1])
        self.run_unet = unet_runner(self.unet, "fast")
        self.dataset = dataset
        self.images = [t.read_image() for t in dataset.templates]
        self.crops = [F.crop_328(image, t.box) for image, t in zip(self.images, dataset.templates)]
        self.outputs: dict[tuple[int, bytes], np.ndarray] = {}
        self._features: dict[tuple[str, tuple[int, ...], bytes], np.ndarray] = {}

    def features(self, pcm: np.ndarray) -> np.ndarray:
        key = (pcm.dtype.str, pcm.shape, pcm.tobytes())
        if key not in self._features:
            self._features[key] = encode(self.encoder, pcm)
        return self._features[key].copy()

    def clip(self, windows: list[np.ndarray]) -> tuple[list, list, list]:
        """Frames, crop boxes and templates for frame i made with audio window `windows[i]`."""
        schedule = self.dataset.schedule(len(windows))
        todo = {(t, w.tobytes()): (t, w) for t, w in zip(schedule, windows) if (t, w.tobytes()) not in self.outputs}
        pending = list(todo.values())
        for start in range(0, len(pending), 8):
            batch = pending[start : start + 8]
            out = self.run_unet(np.stack([F.unet_input(self.crops[t]) for t, _ in batch]), np.stack([w for _, w in batch]))
            for (t, w), o in zip(batch, out):
                self.outputs[(t, w.tobytes())] = o
        frames, boxes, templates = [], [], []
        for t, w in zip(schedule, windows):
            box = self.dataset.templates[t].box
            mouth = F.mouth_from_output(self.outputs[(t, w.tobytes())])
            frames.append(F.paste(self.images[t], F.pasted_region(self.crops[t], mouth, box), box))
            boxes.append(box)
            templates.append(self.images[t])
        return frames, boxes, templates


@pytest.fixture(scope="module")
def made(weights, two_templates):
    return Frames(weights, two_templates)


def windows_of(features: np.ndarray, count: int, shift: int = 0) -> list[np.ndarray]:
    """Frame i reads the audio window of frame i - shift (a port whose features are delayed by `shift`)."""
    return [A.unet_audio_window(features, min(max(i - shift, 0), len(features) - 1)) for i in range(count)]


@pytest.mark.slow
def test_speech_and_silence_make_mouth_boxes_far_apart(made, speech):
    """The issue's measure on a short clip: the 25th percentile of the mouth box's PSNR, speech against silence, <= 30 dB."""
    count = 24
    spoken = made.clip(windows_of(made.features(speech), count))[0]
    quiet, boxes, _ = made.clip(windows_of(made.features(np.zeros_like(speech)), count))
    psnrs = []
    for s, q, box in zip(spoken, quiet, boxes):
        x0, y0, x1, y1 = F.mouth_box(box)
        mse = np.mean((s[y0:y1, x0:x1].astype(np.float64) - q[y0:y1, x0:x1]) ** 2)
        psnrs.append(10 * math.log10(255**2 / max(mse, 1e-10)))
    print(f"speech vs silence, mouth box PSNR over {count} frames: 25th percentile {np.percentile(psnrs, 25):.1f} dB, "
          f"median {np.median(psnrs):.1f}, smallest {min(psnrs):.1f}")
    assert np.percentile(psnrs, 25) <= 30.0


@pytest.mark.slow
@pytest.mark.parametrize("shift", [1, -1, 2, -2])
def test_lip_sync_measures_features_shifted_by_k_at_k(made, speech, shift):
    features = made.features(speech)
    reference = mouth_motion(*made.clip(windows_of(features, CLIP_FRAMES)))
    shifted = mouth_motion(*made.clip(windows_of(features, CLIP_FRAMES, shift)))
    sync = measure_lip_sync(shifted, reference=reference)
    assert sync.offset_frames == shift and sync.score > 0.8, sync.summary()


@pytest.mark.slow
def test_lip_sync_of_a_correct_run_is_offset_zero_score_one(made, speech):
    features = made.features(speech)
    reference = mouth_motion(*made.clip(windows_of(features, CLIP_FRAMES)))
    again = mouth_motion(*made.clip(windows_of(features, CLIP_FRAMES)))
    sync = measure_lip_sync(again, reference=reference)
    assert sync.offset_frames == 0 and sync.score > 0.99


@pytest.mark.slow
def test_lip_sync_of_audio_that_starts_80_ms_late_is_two_frames(made, speech):
    late = np.concatenate([np.zeros(1280, np.float32), speech])[: len(speech)]  # 80 ms of silence first: everything later
    reference = mouth_motion(*made.clip(windows_of(made.features(speech), CLIP_FRAMES)))
    port = mouth_motion(*made.clip(windows_of(made.features(late), CLIP_FRAMES)))
    sync = measure_lip_sync(port, reference=reference)
    assert sync.offset_frames == 2 and sync.score > 0.7, sync.summary()


@pytest.mark.slow
@pytest.mark.parametrize("ignored", ["zero", "constant"])
def test_lip_sync_of_a_port_that_ignores_the_audio_scores_near_zero(made, speech, ignored):
    features = made.features(speech)
    reference = mouth_motion(*made.clip(windows_of(features, CLIP_FRAMES)))
    fixed = np.zeros((32, 16, 16), np.float32) if ignored == "zero" else A.unet_audio_window(features, 0)
    port = mouth_motion(*made.clip([fixed] * CLIP_FRAMES))
    sync = measure_lip_sync(port, reference=reference)
    assert abs(sync.score) < 0.2, sync.summary()
