"""Diagnosis by simulation on real data (sanders-mini, golden weights, 2 s of the golden WAV).

Each candidate is made here with the reference's own stage functions and a hand-written mistake (not with
the simulator, or the test would prove nothing); `explain` must name the mistake from the output frames
alone, name both of two mistakes, name nothing for a correct candidate, and report sensible evidence.
The simulator runs the same eager PyTorch networks as the candidates (`reference_case.generate`, whose
U-Net outputs are cached for the whole session), so a right explanation is bit-exact: the fast tests use
`noise_floor_db=inf`, and a subset of the catalogue (each mistake among distractors of its own family and
others) to keep the U-Net runs few; the slow tests search the whole catalogue on ONNX Runtime, for a candidate made
there too (a right explanation is bit-exact) and for one from eager torch, sharing their U-Net outputs by input.
"""

from __future__ import annotations

import math
import re
import time

import cv2
import numpy as np
import pytest

from synctalk_parity.harness.ports.simulate import (
    FP16_NOISE_FLOOR_DB,
    HYPOTHESES,
    HYPOTHESES_BY_NAME,
    NOISE_FLOOR_DB,
    Simulator,
    Variant,
    explain,
)
from synctalk_parity.harness.verdict.types import PSNR_IDENTICAL
from synctalk_parity.reference import audio, frames
from synctalk_parity.reference.audio import AudioFrontEnd, AudioWindow

SAMPLE = (1, 3)  # the reference_case fixture holds these frames' U-Net outputs already
FAST = tuple(HYPOTHESES_BY_NAME[name] for name in (
    # after the network (no U-Net runs)
    "no_canvas", "paste_bilinear", "rounding", "output_rgb", "jpeg_mouth_q90", "lossy_output_q75", "lossy_output_q90", "lossy_output_q95",
    # before it
    "mask_smaller_2", "mask_smaller_4", "mask_missing", "input_rgb", "audio_tiled", "audio_zero", "audio_shift_+1", "audio_shift_-1",
    "crop_bilinear", "template_offset_+1",
))
EXACT = math.inf  # the simulator runs the candidates' own networks: a right explanation is identical


@pytest.fixture(scope="module")
def simulator(reference_case) -> Simulator:
    def generate(images, unet_audio):
        return np.stack([reference_case.generate(x, a) for x, a in zip(images, unet_audio)])

    return Simulator(reference_case.dataset, reference_case.clip.pcm, generate, reference_case.pipeline.encode_audio)


# ----- candidates: the reference stages (ReferencePipeline.frame) with one step written by hand -----


def _made(case, index, features=None, unet_input=None, unet_audio=None, generate=None, region=None, output=None) -> np.ndarray:
    template = case.dataset.templates[case.schedule[index]]
    image = template.read_image()
    box = template.box
    crop = frames.crop_328(image, box)
    image_in = (unet_input or frames.unet_input)(crop)
    audio_in = (unet_audio or audio.unet_audio_window)(case.clip.features if features is None else features, index)
    mouth = frames.mouth_from_output((generate or case.generate)(image_in, audio_in))
    pasted = (region or frames.pasted_region)(crop, mouth, box)
    return (output or (lambda frame: frame))(frames.paste(image, pasted, box))


def _candidate(case, **mistake) -> dict[int, np.ndarray]:
    return {i: _made(case, i, **mistake) for i in SAMPLE}


def _no_canvas(crop, mouth, box):
    xmin, ymin, xmax, ymax = box
    return cv2.resize(mouth, (xmax - xmin, ymax - ymin), interpolation=cv2.INTER_CUBIC)


def _mask_smaller_by_2(crop):
    real = crop[4:324, 4:324].copy()
    masked = real.copy()
    masked[7:308, 7:313] = 0  # the reference blacks rows 5..309, cols 5..314; 2 px less on each side
    return np.concatenate([real.transpose(2, 0, 1), masked.transpose(2, 0, 1)]).astype(np.float32) / np.float32(255)


def _rgb_input(crop):
    return frames.unet_input(np.ascontiguousarray(crop[..., ::-1]))


def _tiled(features, index):
    return np.repeat(features[index][None], 16, axis=0).reshape(32, 16, 16)


def _shifted_one_row(features, index):
    rows = [features[r] if 0 <= r < len(features) else np.zeros(features.shape[1], np.float32) for r in range(index - 7, index + 9)]
    return np.stack(rows).astype(np.float32).reshape(32, 16, 16)


def _jpeg_90(frame):
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


# ----- the simulator itself -----


def test_the_reference_variant_is_the_reference_bit_for_bit(reference_case, simulator):
    assert np.array_equal(audio.mel_spectrogram(reference_case.clip.pcm, Variant().front_end), reference_case.clip.mel)
    assert simulator.frame_count(Variant()) == reference_case.clip.frame_count
    for stages in simulator.stages(Variant(), SAMPLE):
        theirs = reference_case.frames[stages.index]
        assert (stages.template_index, stages.crop_box) == (theirs.template_index, theirs.crop_box)
        for name in ("crop_328", "unet_input", "unet_audio", "unet_output", "mouth", "pasted_region", "output"):
            assert np.array_equal(getattr(stages, name), getattr(theirs, name)), name


def test_front_end_mistakes_change_the_frame_count(simulator):
    assert [simulator.frame_count(Variant().with_knobs(f)) for f in ({}, {"front_end.center": False}, {"front_end.padded": False},
                                                                     {"front_end.center": False, "front_end.padded": False})] == [49, 48, 47, 46]
    ten_seconds = np.zeros(160_000, np.float32)
    assert audio.mel_spectrogram(ten_seconds).shape[0] == 801 and audio.mel_spectrogram(ten_seconds, AudioFrontEnd(center=False)).shape[0] == 797
    assert audio.window_count(801) + 2 == 249 and audio.window_count(797) + 2 == 248  # 246 windows, 248 frames without centring


def test_the_catalogue_is_named_and_each_hypothesis_changes_the_reference():
    names = [h.name for h in HYPOTHESES]
    assert len(names) == len(set(names)) and len(HYPOTHESES) >= 50
    assert all(h(Variant()) != Variant() and h.description and h.category for h in HYPOTHESES)
    assert HYPOTHESES_BY_NAME["no_canvas"].description == "mouth resized straight onto the crop box without the 328 canvas"
    assert HYPOTHESES_BY_NAME["no_canvas"].after_network and not HYPOTHESES_BY_NAME["mask_smaller_2"].after_network
    assert HYPOTHESES_BY_NAME["audio_shift_+1"](Variant()).differences() == {"audio_window.shift": 1}


def test_each_hypothesis_is_a_form_of_a_registered_mistake_named_as_the_stage_signatures_name_it():
    from synctalk_parity.harness.verdict.mistakes import MISTAKES_BY_ID

    assert all(h.mistake in MISTAKES_BY_ID and h.registered.fix for h in HYPOTHESES)
    assert not [h.name for h in HYPOTHESES if re.search(r"\[[a-z#/@]", h.description)]  # the CLI prints them with rich: [name] is markup
    forms = {"input_rgb": "channels_swapped", "output_rgb": "channels_swapped_at_paste", "mask_smaller_2": "mask_rectangle_off",
             "rounding": "rounding_not_truncation", "audio_zero": "ghost_audio", "audio_shift_+1": "audio_shifted",
             "features_unpadded": "audio_dropped", "template_offset_-1": "template_off_by_one", "crop_bilinear": "resize_not_bicubic",
             "lossy_output_q90": "lossy_output"}
    assert {name: HYPOTHESES_BY_NAME[name].mistake for name in forms} == forms


def test_the_resize_mapping_is_a_knob_of_the_crop_and_the_paste():
    """OpenCV samples on half-pixel centres; a corner-aligned resize keeps the corner pixels and maps the ends onto each
    other, an asymmetric nearest is OpenCV's nearest; both are forms of resize_mapping, set on the reference's knobs."""
    from synctalk_parity.errors import ParityError

    from .port_writer import corner_bilinear

    image = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (328, 328, 3), dtype=np.uint8), (5, 5), 2)
    corner = frames.resize(image, (201, 195), cv2.INTER_LINEAR, "corner")
    assert corner.shape == (195, 201, 3) and (corner[0, 0] == image[0, 0]).all() and (corner[-1, -1] == image[-1, -1]).all()
    assert np.mean(corner != corner_bilinear(image, (201, 195))) < 0.001  # a port's float bilinear, to a level on a few pixels
    assert np.abs(corner.astype(int) - cv2.resize(image, (201, 195), interpolation=cv2.INTER_LINEAR)).max() > 8
    assert np.array_equal(frames.resize(image, (201, 195), cv2.INTER_NEAREST, "asymmetric"),
                          cv2.resize(image, (201, 195), interpolation=cv2.INTER_NEAREST))
    assert np.array_equal(frames.resize(image, (201, 195)), cv2.resize(image, (201, 195), interpolation=cv2.INTER_CUBIC))
    with pytest.raises(ParityError, match="not OpenCV flag"):
        frames.resize(image, (201, 195), cv2.INTER_AREA, "corner")
    with pytest.raises(ParityError, match=r"FrameGeometry\.mapping"):
        frames.FrameGeometry(mapping="centre")
    for name, group in (("paste_bilinear_corner", "finish"), ("crop_bilinear_corner", "geometry")):
        assert HYPOTHESES_BY_NAME[name].mistake == "resize_mapping"
        assert HYPOTHESES_BY_NAME[name](Variant()).differences() == {f"{group}.interpolation": cv2.INTER_LINEAR, f"{group}.mapping": "corner"}
    assert HYPOTHESES_BY_NAME["paste_bilinear_corner"].after_network and not HYPOTHESES_BY_NAME["crop_bilinear_corner"].after_network


# ----- explanations -----


def test_a_correct_candidate_gets_no_hypothesis(reference_case, simulator):
    candidate = {i: reference_case.frames[i].output for i in SAMPLE}
    explanation = explain(simulator, candidate, sample=SAMPLE, noise_floor_db=EXACT)
    assert explanation.names == [] and explanation.explained and explanation.identical
    assert explanation.evaluations == 1 and explanation.unexplained == ()  # the reference only: no hypothesis was tried


def test_runtime_noise_is_below_the_floor_and_gets_no_hypothesis(reference_case, simulator):
    """fp32 ulps in the U-Net output (another runtime) pass the default floor; fp16-rounded outputs the fp16 floor."""
    rng = np.random.default_rng(0)
    ulps = _candidate(reference_case, generate=lambda x, a: reference_case.generate(x, a) + rng.normal(0, 3e-6, (3, 320, 320)).astype(np.float32))
    found = explain(simulator, ulps, sample=SAMPLE)
    assert found.names == [] and found.explained and found.final.box_db > NOISE_FLOOR_DB
    fp16 = _candidate(reference_case, generate=lambda x, a: reference_case.generate(x, a).astype(np.float16).astype(np.float32))
    found = explain(simulator, fp16, sample=SAMPLE, noise_floor_db=FP16_NOISE_FLOOR_DB)
    assert found.names == [] and found.explained and 55 < found.final.box_db < NOISE_FLOOR_DB


@pytest.mark.parametrize(
    ("mistake", "name"),
    [
        ({"region": _no_canvas}, "no_canvas"),
        ({"unet_input": _mask_smaller_by_2}, "mask_smaller_2"),
        ({"unet_input": _rgb_input}, "input_rgb"),
        ({"unet_audio": _tiled}, "audio_tiled"),
        ({"unet_audio": _shifted_one_row}, "audio_shift_+1"),
        ({"output": _jpeg_90}, "lossy_output_q90"),
    ],
)
def test_one_mistake_is_named_by_simulation(reference_case, simulator, mistake, name):
    candidate = _candidate(reference_case, **mistake)
    explanation = explain(simulator, candidate, sample=SAMPLE, noise_floor_db=EXACT, hypotheses=FAST)
    assert explanation.names == [name], explanation.summary()
    assert explanation.explained and explanation.identical
    finding = explanation.findings[0]
    assert finding.before == explanation.initial and finding.after == explanation.final
    assert finding.after.box_db == PSNR_IDENTICAL and finding.before.box_db < 66  # audio mistakes move the box least: 52-62 dB here
    assert "simulated vs" in finding.evidence and f"{finding.before.box_db:.1f} dB as-is" in finding.evidence
    if name == "lossy_output_q90":  # an output-wide mistake shows outside the crop box too
        assert finding.before.outside_db < 60 and "outside the box" in finding.evidence
    else:
        assert finding.before.outside_db == PSNR_IDENTICAL


def test_two_mistakes_at_once_are_both_named(reference_case, simulator):
    candidate = _candidate(reference_case, region=_no_canvas, unet_input=_mask_smaller_by_2)
    explanation = explain(simulator, candidate, sample=SAMPLE, noise_floor_db=EXACT, hypotheses=FAST)
    assert explanation.names == ["no_canvas", "mask_smaller_2"], explanation.summary()
    first, second = explanation.findings
    assert first.before.box_db < first.after.box_db < second.after.box_db == PSNR_IDENTICAL
    assert explanation.variant == Variant().with_knobs({"finish.canvas": False, "network_input.mask_rect": (7, 7, 306, 301)}) and explanation.identical


def test_a_front_end_mistake_is_named_by_the_frame_count(reference_case, simulator):
    unpadded = reference_case.clip.features[1:-1]  # first and last rows not repeated
    candidate = _candidate(reference_case, features=unpadded)
    explanation = explain(simulator, candidate, sample=SAMPLE, noise_floor_db=EXACT, candidate_frame_count=len(unpadded))
    assert explanation.names == ["features_unpadded"] and explanation.identical, explanation.summary()
    assert "makes 47 frames (the reference 49, the candidate 47)" in explanation.findings[0].evidence
    assert explanation.simulated_frame_count == 47


def test_stft_without_centring_is_named_by_the_frame_count(reference_case, simulator):
    import librosa

    spectrum = librosa.stft(audio.preemphasis(reference_case.clip.pcm), n_fft=800, hop_length=200, win_length=800, center=False)
    db = 20 * np.log10(np.maximum(1e-5, audio.mel_filterbank() @ np.abs(spectrum))) - 20
    mel = np.clip(8 * ((db + 100) / 100) - 4, -4, 4).T
    features = audio.pad_features(audio.encode_windows(reference_case.pipeline.encode_audio, audio.mel_windows(mel)))
    candidate = _candidate(reference_case, features=features)
    explanation = explain(simulator, candidate, sample=SAMPLE, noise_floor_db=EXACT, candidate_frame_count=len(features))
    assert len(features) == 48 and explanation.names == ["stft_no_center"] and explanation.identical, explanation.summary()


def test_an_uncatalogued_scale_is_measured_by_registration(reference_case, simulator):
    """Without `no_canvas` in the catalogue, nothing explains a mouth resized onto the box without the canvas;
    registration measures what it is: the crop box scaled by 328 / 320 about its centre."""
    candidate = _candidate(reference_case, region=_no_canvas)
    without = tuple(h for h in FAST if h.name != "no_canvas")
    explanation = explain(simulator, candidate, sample=SAMPLE, noise_floor_db=EXACT, hypotheses=without)
    assert explanation.names == [] and not explanation.explained, explanation.summary()
    registration = explanation.registration
    assert registration is not None and registration.method == "ecc-affine"
    assert registration.scale == pytest.approx((328 / 320, 328 / 320), abs=0.004)
    assert registration.shift == pytest.approx((0, 0), abs=0.5) and abs(registration.rotation_deg) < 0.2
    assert registration.after_db > registration.before_db + 3
    assert any("scaled by 1.02" in line for line in explanation.unexplained)


def test_an_uncatalogued_shift_is_measured_by_registration(reference_case, simulator):
    """The pasted region written 3 px right and 2 px down of its box."""
    def shifted(index):
        template = reference_case.dataset.templates[reference_case.schedule[index]]
        xmin, ymin, xmax, ymax = template.box
        return frames.paste(template.read_image(), reference_case.frames[index].pasted_region, (xmin + 3, ymin + 2, xmax + 3, ymax + 2))

    explanation = explain(simulator, {i: shifted(i) for i in SAMPLE}, sample=SAMPLE, noise_floor_db=EXACT, hypotheses=())
    registration = explanation.registration
    assert registration is not None, explanation.summary()
    assert registration.shift == pytest.approx((3, 2), abs=0.3) and registration.scale == pytest.approx((1, 1), abs=0.003)


def test_bad_requests_are_refused(reference_case, simulator):
    from synctalk_parity.errors import ParityError

    candidate = {i: reference_case.frames[i].output for i in SAMPLE}
    with pytest.raises(ParityError, match="not among the candidate frames"):
        explain(simulator, candidate, sample=[2])
    with pytest.raises(ParityError, match="outside the 40 frames"):
        explain(simulator, {45: candidate[1]}, sample=[45], candidate_frame_count=40)
    with pytest.raises(ParityError, match="cannot be simulated"):
        explain(simulator, {1: candidate[1][:100]}, sample=[1])
    with pytest.raises(ParityError, match=r"AudioWindow\.source"):
        AudioWindow(source="silence")


# ----- the whole catalogue -----


@pytest.fixture(scope="module")
def onnx(golden):
    """The golden networks on ONNX Runtime, with the U-Net's outputs kept by input across the two whole-catalogue
    searches (both sample frames 1 and 3 and try the same hypotheses there: the second runs none of those again)."""
    from synctalk_parity.backends import ModelSource, create_backend

    from ..conftest import unet_key

    source = ModelSource.from_paths(golden / "weights" / "unet_328_ave.pth", golden / "weights" / "audio_visual_encoder.pth")
    outputs: dict[bytes, np.ndarray] = {}

    def generate_one(image, unet_audio):
        key = unet_key(image, unet_audio)
        if key not in outputs:
            outputs[key] = backend.generate(image[None], unet_audio[None])[0]
        return outputs[key]

    def generate(images, unet_audio):
        return np.stack([generate_one(x, a) for x, a in zip(images, unet_audio)])

    with create_backend("onnxruntime", source) as backend:
        yield backend, generate, generate_one


@pytest.mark.slow
def test_the_whole_catalogue_names_two_mistakes(reference_case, onnx):
    """The whole catalogue, the candidate made by the simulator's own runtime (ONNX Runtime: its audio encoder and
    U-Net), so a right explanation is bit-exact, as with the subsets above on eager torch."""
    backend, generate, generate_one = onnx
    simulator = Simulator(reference_case.dataset, reference_case.clip.pcm, generate, backend.encode_audio)
    features = audio.pad_features(audio.encode_windows(backend.encode_audio, reference_case.clip.windows))
    candidate = _candidate(reference_case, features=features, generate=generate_one, region=_no_canvas, unet_input=_mask_smaller_by_2)
    began = time.perf_counter()
    explanation = explain(simulator, candidate, sample=SAMPLE, noise_floor_db=EXACT)
    assert explanation.names == ["no_canvas", "mask_smaller_2"] and explanation.identical, explanation.summary()
    print("\n" + explanation.summary())
    print(f"whole catalogue, onnxruntime: {time.perf_counter() - began:.1f} s, {explanation.unet_runs} U-Net runs, "
          f"{explanation.evaluations} variants scored")


@pytest.mark.slow
def test_onnxruntime_explains_a_torch_candidate_over_four_frames(reference_case, onnx):
    """The intended use: the simulator on ONNX Runtime, a candidate from another runtime (here eager torch),
    4 sampled frames, the whole catalogue, the default (fp32) floor."""
    backend, generate, _ = onnx
    sample = (0, 1, 2, 3)
    candidate = {i: _made(reference_case, i, region=_no_canvas, unet_input=_mask_smaller_by_2) for i in sample}
    onnx_simulator = Simulator(reference_case.dataset, reference_case.clip.pcm, generate, backend.encode_audio)
    began = time.perf_counter()
    explanation = explain(onnx_simulator, candidate, sample=sample)
    seconds = time.perf_counter() - began
    assert explanation.names == ["no_canvas", "mask_smaller_2"] and explanation.explained, explanation.summary()
    assert explanation.final.box_db > 80  # runtime noise only
    print("\n" + explanation.summary())
    print(f"whole catalogue, onnxruntime, 4 frames: {seconds:.1f} s, {explanation.unet_runs} U-Net inputs ({onnx_simulator.unet_seconds:.1f} s)")
