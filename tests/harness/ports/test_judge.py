"""Judging ports from what they already write: realistic ports are built here with the reference's own stage
functions and hand-written mistakes (never with the simulator), written as ports write them (JPEG or PNG frames
numbered from 1, an mp4 with its sound), and `parity compare` must name every mistake and fail, or pass."""

from __future__ import annotations

import json
import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.reference import audio, frames
from synctalk_parity.reference.video import VideoWriter

from ..conftest import reference_unet_outputs, unet_key

runner = CliRunner()
ENV = {"COLUMNS": "200"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(golden, sanders, tmp_path_factory):
    """The port's inputs: sanders-mini, 2 s of the golden speech as a WAV, the golden weights. The cache is the
    session's: the golden ONNX export the simulation runs on is made there once (the backend and export tests use it
    too), the reference of these inputs by the first compare, reused by the next."""
    from synctalk_parity.reference.audio import SAMPLE_RATE, load_audio

    from ...golden_files import golden_weights

    weights = golden_weights()
    if weights is None:
        pytest.skip("golden weights not found")
    root = tmp_path_factory.mktemp("port-inputs")
    wav = root / "speech.wav"
    soundfile.write(wav, load_audio(golden / "talk_hb_10s.wav")[: 2 * SAMPLE_RATE], SAMPLE_RATE, subtype="FLOAT")
    return {"dataset": sanders, "audio": wav, "unet": weights[0], "audio_encoder": weights[1]}


@pytest.fixture(scope="module")
def reference_outputs(inputs, reference_case) -> dict[bytes, np.ndarray]:
    """The U-Net outputs of the reference every compare here judges against (`--reference-exact`, eager PyTorch), made
    once into the session's cache before the first compare (which then finds it cached), by the digest of their inputs:
    a correct port runs the same eager U-Net on the same inputs, so it takes them from there rather than computing
    the 49 frames a second time. That the exact execution is plain eager, the same bytes, is checked on the frames
    `reference_case` ran in this process itself."""
    outputs = reference_unet_outputs(inputs["dataset"], inputs["audio"], inputs["unet"], inputs["audio_encoder"], reference_case.clip.frame_count)
    assert len(outputs) == reference_case.clip.frame_count == 49
    for stages in reference_case.frames.values():
        assert np.array_equal(outputs[unet_key(stages.unet_input, stages.unet_audio)], stages.unet_output), stages.index
    return outputs


@pytest.fixture(scope="module")
def port_frames(reference_case, reference_outputs):
    """make(no_canvas=..., mask=..., count=...) -> {index: output frame} of a port written by hand from the reference
    functions, frames 0..count-1 (all by default). Its U-Net: an input the reference ran (a mistake after the network,
    or none) has its eager output in `reference_outputs`, so a correct port is the reference's execution bit for bit;
    any other (a smaller mask) is run here in the faster execution (`reference/execution.py`: channels-last, frozen,
    2-2.5x eager's speed, within float32 rounding of it), as a port runs its own runtime: that port is judged as JPEG
    q90 frames, whose noise is thousands of times that rounding."""
    from synctalk_parity.reference.execution import unet_runner

    made: dict[tuple, dict[int, np.ndarray]] = {}
    fast: list = []

    def generate(unet_input: np.ndarray, unet_audio: np.ndarray) -> np.ndarray:
        output = reference_outputs.get(unet_key(unet_input, unet_audio))
        if output is not None:
            return output
        if not fast:
            fast.append(unet_runner(reference_case.pipeline.unet, "fast"))
        return fast[0](unet_input[None], unet_audio[None])[0]

    def make(no_canvas: bool = False, mask: tuple[int, int, int, int] = frames.MASK_RECT, count: int | None = None) -> dict[int, np.ndarray]:
        case = reference_case
        out = made.setdefault((no_canvas, mask), {})
        indices = range(case.clip.frame_count if count is None else count)
        for index in indices:
            if index in out:
                continue
            template = case.dataset.templates[case.schedule[index]]
            image, box = template.read_image(), template.box
            crop = frames.crop_328(image, box)
            real = crop[4:324, 4:324].copy()
            masked = cv2.rectangle(real.copy(), mask, (0, 0, 0), -1)
            unet_input = np.stack([*cv2.split(real), *cv2.split(masked)]).astype(np.float32) / np.float32(255)
            mouth = frames.mouth_from_output(generate(unet_input, audio.unet_audio_window(case.clip.features, index)))
            xmin, ymin, xmax, ymax = box
            if no_canvas:  # the mistake of a public port: the mouth straight onto the box, no 328 canvas
                region = cv2.resize(mouth, (xmax - xmin, ymax - ymin), interpolation=cv2.INTER_CUBIC)
            else:
                region = frames.pasted_region(crop, mouth, box)
            out[index] = frames.paste(image, region, box)
        return {index: out[index] for index in indices}

    return make


def _write(folder, frames_by_index, pattern: str, quality: int | None = None, base: int = 0):
    folder.mkdir(parents=True)
    for index in range(len(frames_by_index)):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else []
        cv2.imwrite(str(folder / pattern.format(index + base)), frames_by_index[index], params)
    return folder


def _compare(inputs, candidate, out, *extra):
    # a correct port's U-Net outputs are plain eager PyTorch (`reference_outputs`): judged against the same execution of
    # the reference, it is identical to it (the default, frozen channels-last, differs by float32 rounding)
    args = ["compare", str(candidate), "--dataset", str(inputs["dataset"]), "--audio", str(inputs["audio"]),
            "--unet", str(inputs["unet"]), "--audio-encoder", str(inputs["audio_encoder"]), "--out", str(out), "--reference-exact", *extra]
    result = runner.invoke(app, args, env=ENV)
    data = json.loads((out / "result.json").read_text()) if (out / "result.json").is_file() else None
    return result, data


def test_a_correct_png_port_passes(inputs, port_frames, tmp_path):
    port = _write(tmp_path / "png", port_frames(), "{:05d}.png")
    result, data = _compare(inputs, port, tmp_path / "verdict")
    assert result.exit_code == 0, result.output
    assert "numbered from 0, offset 0: 49 of 49 reference frames present" in result.output
    assert "PASS: 1 of 1 stages, 49 of 49 frames compared" in result.output
    assert data["port"]["regions"]["psnr"] == {"mouth": 100.0, "crop_rest": 100.0, "outside": 100.0}
    assert data["reference"]["execution"] == "exact" and data["reference"]["frames_computed"] + data["reference"]["frames_cached"] == 49
    assert data["port"]["simulation"] is None  # nothing to explain


def test_a_correct_jpeg_q95_port_fails_only_on_lossy_encoding_and_passes_a_lossy_gate(inputs, port_frames, tmp_path):
    port = _write(tmp_path / "q95", port_frames(), "frame_{:05d}.jpg", quality=95, base=1)
    result, data = _compare(inputs, port, tmp_path / "strict")
    assert result.exit_code == 1, result.output
    names = [d["name"] for d in data["comparison"]["diagnoses"]]
    assert "lossy_output" in names and "JPEG (quality 95" in result.output
    assert [n for n in names if n.startswith("simulated:")] in ([], ["simulated:lossy_output"])  # the registry's id (was lossy_output_q95)
    regions = data["port"]["regions"]["psnr"]
    assert regions["outside"] > 50 and regions["mouth"] > 40  # lossy everywhere, not a wrong mouth
    gate = tmp_path / "lossy.toml"
    gate.write_text("lossy_ok = true\n[regions]\nmouth = 38\ncrop_rest = 35\noutside = 45\n")
    lenient, data = _compare(inputs, port, tmp_path / "lossy", "--gate", str(gate))
    assert lenient.exit_code == 0, lenient.output
    assert data["comparison"]["gate"]["lossy_ok"] is True


def test_a_port_with_four_mistakes_at_once_gets_each_named(inputs, port_frames, tmp_path):
    """1-based JPEG q90 frames, the last two missing, the mouth pasted without the 328 canvas, a smaller mask."""
    smaller = (10, 10, 300, 295)  # 5 px in on each side
    made = port_frames(no_canvas=True, mask=smaller, count=47)  # the last two missing: never made (their U-Net runs are not needed)
    port = _write(tmp_path / "bad", made, "frame_{:05d}.jpg", quality=90, base=1)
    result, data = _compare(inputs, port, tmp_path / "verdict")
    assert result.exit_code == 1, result.output
    assert "numbered from 1, offset 0: 47 of 49 reference frames present; missing at the tail: 47..48" in result.output
    names = [d["name"] for d in data["comparison"]["diagnoses"]]
    assert {"wrong_frame_count", "frames_missing", "lossy_output"} <= set(names)
    simulated = data["port"]["simulation"]["findings"]
    found = [f["name"] for f in simulated]
    assert "no_canvas" in found and any(name.startswith("mask_smaller") for name in found) and "lossy_output_q90" in found
    assert {f["mistake"] for f in simulated} >= {"no_canvas", "mask_rectangle_off", "lossy_output"}  # the registry's ids
    assert {"simulated:no_canvas", "simulated:mask_rectangle_off"} <= set(names) and all(f["fix"] for f in simulated)
    no_canvas = next(f for f in simulated if f["name"] == "no_canvas")
    before, after = (float(x) for x in _box_db(no_canvas["evidence"]))
    assert after > before + 5  # "explains the crop box: 30 dB simulated vs 20 dB as-is"
    psnr = data["port"]["regions"]["psnr"]
    assert psnr["mouth"] < 30 and psnr["outside"] > 50  # the mouth is wrong, the rest only re-encoded


def _box_db(evidence: str) -> tuple[str, str]:
    import re

    match = re.search(r"explains the crop box: ([\d.]+) dB simulated vs ([\d.]+) dB as-is", evidence)
    assert match, evidence
    return match.group(2), match.group(1)


def test_an_mp4_with_its_sound_80_ms_late_is_reported(inputs, port_frames, tmp_path):
    shifted = tmp_path / "late.wav"
    pcm, rate = soundfile.read(inputs["audio"], dtype="float32")
    soundfile.write(shifted, np.concatenate([np.zeros(int(0.080 * rate), np.float32), pcm]), rate, subtype="FLOAT")
    video = tmp_path / "port.mp4"
    made = port_frames()
    with VideoWriter(video, (made[0].shape[1], made[0].shape[0]), audio=shifted) as writer:
        for index in range(len(made)):
            writer.write(made[index])
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True).stderr
    assert "Audio: aac" in probe
    result, data = _compare(inputs, video, tmp_path / "verdict", "--no-simulate")
    assert data["port"]["video"]["fps"] == 25 and data["port"]["video"]["frame_count"] == 49 and data["port"]["video"]["fps_ok"]
    track = data["port"]["audio_track"]
    assert track["same_signal"] and 70 <= track["offset_ms"] <= 90, track
    assert "av_offset" in [d["name"] for d in data["comparison"]["diagnoses"]]
    assert "the sound track is the input audio" in result.output and "offset +80" in result.output
