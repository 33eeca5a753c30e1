"""Diagnoses on real data: each known port mistake is injected into the reference stage functions
(sanders-mini, golden weights, 2 s of the golden WAV), dumped, compared, and must be named at the
right first divergent stage; clean candidates get no diagnosis."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from synctalk_parity.harness.verdict.compare import compare_dumps
from synctalk_parity.harness.verdict.gates import load_gate
from synctalk_parity.models import fixture_audio_encoder, fixture_unet
from synctalk_parity.reference import audio, frames
from synctalk_parity.reference.stages import FrameStages

from ..conftest import frame_dict, write_dump

FLOAT_STAGES = ("audio.pcm", "audio.windows", "audio.features", "frame.unet_audio", "frame.unet_input", "frame.unet_output")


def _frame(case, index, template_index=None, box=None, crop_fn=None, input_fn=None, audio_fn=None, generate=None,
           mouth_fn=None, region_fn=None, output_fn=None, features=None) -> FrameStages:
    """The reference frame computation (ReferencePipeline.frame) with one step replaceable."""
    template_index = case.schedule[index] if template_index is None else template_index
    template = case.dataset.templates[template_index]
    image = template.read_image()
    box = template.box if box is None else box
    crop = (crop_fn or frames.crop_328)(image, box)
    unet_input = (input_fn or frames.unet_input)(crop)
    unet_audio = (audio_fn or audio.unet_audio_window)(case.clip.features if features is None else features, index)
    unet_output = (generate or case.generate)(unet_input, unet_audio)
    mouth = (mouth_fn or frames.mouth_from_output)(unet_output)
    region = (region_fn or frames.pasted_region)(crop, mouth, box)
    output = (output_fn or frames.paste)(image, region, box)
    return FrameStages(index, template_index, box, crop, unet_audio, unet_input, unet_output, mouth, region, output)


def _compare(case, tmp_path, frame_list, clip=None, frame_count=None):
    """A candidate whose listed frames carry the mistake and whose other reference frames are right (a complete dump:
    coverage holds, and the mistake is what is judged)."""
    clip = case.clip.as_dict() if clip is None else clip
    wrong = {f.index: f for f in frame_list}
    rows = [frame_dict(wrong.get(i, case.frames[i])) for i in sorted(set(case.frames) | set(wrong))]
    dump = write_dump(tmp_path / "candidate", clip, rows, frame_count=case.clip.frame_count if frame_count is None else frame_count)
    return compare_dumps(case.dump, dump, load_gate(None))


def _names(comparison):
    return [d.name for d in comparison.diagnoses]


def test_reference_against_itself_and_fp32_noise_is_clean(reference_case, tmp_path):
    same = compare_dumps(reference_case.dump, reference_case.dump, load_gate(None))
    assert same and same.diagnoses == [] and same.first_divergent_stage is None
    rng = np.random.default_rng(0)
    clip = {k: (v + rng.normal(0, 1e-6, v.shape).astype(v.dtype) if k in FLOAT_STAGES else v) for k, v in reference_case.clip.as_dict().items()}
    noisy = []
    for stages in reference_case.frames.values():
        row = frame_dict(stages)
        for key in FLOAT_STAGES:
            if key in row:
                row[key] = row[key] + rng.normal(0, 1e-6, row[key].shape).astype(np.float32)
        noisy.append(row)
    dump = write_dump(tmp_path / "noisy", clip, noisy, reference_case.clip.frame_count)
    comparison = compare_dumps(reference_case.dump, dump, load_gate(None))
    assert comparison, comparison.failures
    assert comparison.diagnoses == []
    assert 0 < comparison.stage("frame.unet_output").max_abs < 1e-4


def test_fp16_rounding_is_not_a_mistake(reference_case, tmp_path):
    """A healthy fp16 backend: U-Net output rounded to float16; the fp16 gate passes, and under the
    fp32 gate it fails at frame.unet_output with no (false) diagnosis."""
    def generate(image, unet_audio):
        return reference_case.generate(image, unet_audio).astype(np.float16).astype(np.float32)

    candidate = [_frame(reference_case, i, generate=generate) for i in reference_case.frames]
    dump = write_dump(tmp_path / "fp16", reference_case.clip.as_dict(), [frame_dict(f) for f in candidate],
                      reference_case.clip.frame_count)
    assert compare_dumps(reference_case.dump, dump, load_gate(None, "fp16")).diagnoses == []
    strict = compare_dumps(reference_case.dump, dump, load_gate(None, "fp32"))
    assert strict.first_divergent_stage == "frame.unet_output" and strict.diagnoses == []


def _rgb_input(crop):
    return frames.unet_input(crop[..., ::-1].copy())


def _rounded_mouth(unet_output):
    return np.clip(np.floor(unet_output.transpose(1, 2, 0) * 255 + 0.5), 0, 255).astype(np.uint8)


def _rgb_paste(image, region, box):
    return frames.paste(image, region[..., ::-1].copy(), box)


def _scaled_255(crop):
    return frames.unet_input(crop) * np.float32(255)


def _scaled_pm1(crop):
    return frames.unet_input(crop) * np.float32(2) - np.float32(1)


def _mask_swapped_wh(crop):
    real = crop[4:324, 4:324].copy()
    masked = cv2.rectangle(real.copy(), (5, 5, 305, 310), (0, 0, 0), -1)  # w and h swapped
    return np.concatenate([real.transpose(2, 0, 1), masked.transpose(2, 0, 1)]).astype(np.float32) / np.float32(255)


def _crop_with(interpolation):
    def crop(image, box):
        xmin, ymin, xmax, ymax = box
        return cv2.resize(image[ymin:ymax, xmin:xmax], (328, 328), interpolation=interpolation)
    return crop


def _region_with(interpolation):
    def region(crop, mouth, box):
        xmin, ymin, xmax, ymax = box
        restored = crop.copy()
        restored[4:324, 4:324] = mouth
        return cv2.resize(restored, (xmax - xmin, ymax - ymin), interpolation=interpolation)
    return region


def _window_shifted(features, index):
    return audio.unet_audio_window(features, index + 1)


def _silent_window(features, index):
    return np.zeros((32, 16, 16), dtype=np.float32)


@pytest.mark.parametrize(
    ("mistake", "frames_run", "stage", "name"),
    [
        ({"input_fn": _rgb_input}, (1,), "frame.unet_input", "channels_swapped"),
        ({"crop_fn": lambda image, box: frames.crop_328(image[..., ::-1].copy(), box)}, (1,), "frame.crop_328", "channels_swapped"),
        ({"output_fn": _rgb_paste}, (0, 1), "frame.output", "channels_swapped_at_paste"),
        ({"mouth_fn": _rounded_mouth}, (0, 1), "frame.mouth", "rounding_not_truncation"),
        ({"input_fn": _scaled_255}, (1,), "frame.unet_input", "wrong_input_scaling"),
        ({"input_fn": _scaled_pm1}, (1,), "frame.unet_input", "wrong_input_scaling"),
        ({"input_fn": _mask_swapped_wh}, (1,), "frame.unet_input", "mask_rectangle_off"),
        ({"crop_fn": _crop_with(cv2.INTER_NEAREST)}, (1,), "frame.crop_328", "resize_not_bicubic"),
        ({"crop_fn": _crop_with(cv2.INTER_LINEAR)}, (1,), "frame.crop_328", "resize_not_bicubic"),
        ({"region_fn": _region_with(cv2.INTER_LINEAR)}, (0, 1), "frame.pasted_region", "resize_not_bicubic"),
        ({"audio_fn": _window_shifted}, (1,), "frame.unet_audio", "audio_shifted"),
        ({"audio_fn": _silent_window}, (1,), "frame.unet_audio", "ghost_audio"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_frame_mistakes_are_named(reference_case, tmp_path, mistake, frames_run, stage, name):
    comparison = _compare(reference_case, tmp_path, [_frame(reference_case, i, **mistake) for i in frames_run])
    assert comparison.first_divergent_stage == stage, comparison.failures
    assert _names(comparison)[:1] == [name], comparison.diagnoses
    assert comparison.diagnoses[0].stage == stage


def test_template_off_by_one(reference_case, tmp_path):
    comparison = _compare(reference_case, tmp_path, [_frame(reference_case, i, template_index=reference_case.schedule[i] - 1) for i in (1, 2)])
    assert comparison.first_divergent_stage == "frame.template_index"
    assert _names(comparison)[0] == "template_off_by_one"


def test_landmark_off_by_one_and_box_from_wrong_frame(reference_case, tmp_path):
    templates = reference_case.dataset.templates
    shifted = [_frame(reference_case, i, box=templates[reference_case.schedule[i] + 1].box) for i in (2,)]
    comparison = _compare(reference_case, tmp_path / "a", shifted)
    assert comparison.first_divergent_stage == "frame.crop_box"
    assert _names(comparison)[0] == "landmark_off_by_one"
    far = [_frame(reference_case, 3, box=templates[reference_case.schedule[0]].box)]  # frame 0's box, 3 templates away
    comparison = _compare(reference_case, tmp_path / "b", far)
    assert comparison.first_divergent_stage == "frame.crop_box"
    assert _names(comparison)[0] == "crop_box_wrong_frame"


def test_audio_features_shifted_dropped_and_constant(reference_case, tmp_path):
    clip = reference_case.clip.as_dict()
    raw = clip["audio.features"][1:-1]
    shifted = np.concatenate([raw[:1], raw[:1], raw[:-1], raw[-1:]])  # row i is the reference's row i - 1
    comparison = _compare(reference_case, tmp_path / "shift", [], clip={**clip, "audio.features": shifted})
    assert comparison.first_divergent_stage == "audio.features" and _names(comparison) == ["audio_shifted"]
    comparison = _compare(reference_case, tmp_path / "drop", [], clip={**clip, "audio.features": raw}, frame_count=len(raw))
    assert comparison.first_divergent_stage == "audio.features"
    assert set(_names(comparison)) == {"audio_dropped", "wrong_frame_count"}
    constant = np.repeat(clip["audio.features"][:1], len(clip["audio.features"]), axis=0)
    comparison = _compare(reference_case, tmp_path / "const", [], clip={**clip, "audio.features": constant})
    assert comparison.first_divergent_stage == "audio.features" and _names(comparison) == ["ghost_audio"]


def test_random_weights(reference_case, tmp_path):
    random_unet = fixture_unet(seed=3).eval()

    def generate(image, unet_audio):
        with torch.no_grad():
            return random_unet(torch.from_numpy(image[None]), torch.from_numpy(unet_audio[None]))[0].numpy()

    comparison = _compare(reference_case, tmp_path / "unet", [_frame(reference_case, 0, generate=generate)])
    assert comparison.first_divergent_stage == "frame.unet_output"
    assert _names(comparison)[0] == "random_weights" and comparison.diagnoses[0].stage == "frame.unet_output"
    encoder = fixture_audio_encoder(seed=3).eval()
    with torch.no_grad():
        features = audio.pad_features(encoder(torch.from_numpy(reference_case.clip.windows)).numpy())
    comparison = _compare(reference_case, tmp_path / "encoder", [], clip={**reference_case.clip.as_dict(), "audio.features": features})
    assert comparison.first_divergent_stage == "audio.features"
    assert _names(comparison) == ["random_weights"]


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN to uint8 in the mouth: the symptom
@pytest.mark.parametrize(
    ("overflow", "symptom"),
    [(lambda x: (x * 1e5).half().float(), "307200 NaN"), (lambda x: (x * 1e5).clamp(-65504, 65504), "saturates")],
    ids=["to-inf", "saturating"],
)
def test_fp16_overflow(reference_case, tmp_path, overflow, symptom):
    """An activation past fp16's range: a hook scales the first layer's output and stores it as
    float16 (overflowing to Inf, then NaN) or clamps it to fp16's largest value (saturating)."""
    unet = reference_case.pipeline.unet
    layer = next(m for m in unet.modules() if isinstance(m, torch.nn.Conv2d))
    handle = layer.register_forward_hook(lambda module, inputs, output: overflow(output))
    try:
        with torch.no_grad():
            def generate(image, unet_audio):
                return unet(torch.from_numpy(image[None]), torch.from_numpy(unet_audio[None]))[0].numpy()
            overflowed = _frame(reference_case, 1, generate=generate)
    finally:
        handle.remove()
    comparison = _compare(reference_case, tmp_path, [overflowed])
    assert comparison.first_divergent_stage == "frame.unet_output"
    assert _names(comparison)[0] == "fp16_overflow", comparison.diagnoses
    assert symptom in comparison.diagnoses[0].message


def test_one_box_for_every_frame(reference_case, tmp_path):
    """A port that dumps only the light stages and computes the crop box once, from the first template."""
    box = np.asarray(reference_case.dataset.templates[0].box, dtype=np.int64)
    rows = [{"index": i, "frame.template_index": np.int64(reference_case.schedule[i]), "frame.crop_box": box} for i in reference_case.frames]
    dump = write_dump(tmp_path / "light", None, rows, reference_case.clip.frame_count, stages="frame.template_index,frame.crop_box")
    comparison = compare_dumps(reference_case.dump, dump, load_gate(None))
    assert comparison.first_divergent_stage == "frame.crop_box"
    assert _names(comparison) == ["crop_box_wrong_frame"] and "every frame uses the crop box" in comparison.diagnoses[0].message
