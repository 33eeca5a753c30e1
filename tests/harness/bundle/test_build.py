"""`parity bundle`: a port written from the bundle alone is proven (and its mistakes named) by `parity compare`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from synctalk_parity.cli import app
from synctalk_parity.harness.bundle.build import TENSOR_STAGES, hann_window, pipeline_constants, tensor_frames
from synctalk_parity.harness.verdict.gates import default_gate
from synctalk_parity.reference import audio, frames
from synctalk_parity.reference.dataset import template_schedule

from ...golden_files import golden_weights

runner = CliRunner()
ENV = {"COLUMNS": "120"}
FRAMES = 6
DEMO_FRAMES = 8  # `parity bundle`'s default
GOLDEN_LIMIT = 20e6  # bytes: a bundle small enough to attach to an issue
IMAGE_STAGES = {"frame.crop_328", "frame.mouth", "frame.pasted_region", "frame.output"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(golden: Path, sanders: Path, tmp_path_factory) -> Path:
    weights = golden_weights()
    if weights is None:
        pytest.skip("golden fixture weights (../shared/golden/weights) not found")
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    args = ["bundle", "--dataset", str(sanders), "--audio", str(golden / "talk_hb_10s.wav"),
            "--unet", str(weights[0]), "--audio-encoder", str(weights[1]), "--frames", str(FRAMES), "--out", str(out)]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert "total" in result.output and "golden/" in result.output
    return out


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory) -> Path:
    """`parity bundle` as a port author first runs it: the built-in demo, the demo weights, 8 frames."""
    out = tmp_path_factory.mktemp("demo-bundle") / "bundle"
    result = runner.invoke(app, ["bundle", "--out", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "golden/" in result.output
    return out


def test_bundle_holds_everything_a_port_needs(bundle: Path):
    for name in ("README.md", "PORTING.md", "pipeline.json", "mel_filterbank.npy", "window.npy", "dump.schema.json",
                 "golden/manifest.json", "golden/input.wav"):
        assert (bundle / name).is_file(), name
    for folder in ("onnx-fp32", "coreml-fp32", "coreml-fp16"):
        assert (bundle / "models" / folder / "manifest.json").is_file(), folder
    assert not bundle.with_name("bundle.partial").exists()
    manifest = json.loads((bundle / "golden" / "manifest.json").read_text())
    assert manifest["frame_count"] == FRAMES
    assert manifest["stages"]["frame.unet_output"]["frames"] == [0, FRAMES - 1] == tensor_frames(FRAMES)
    assert manifest["stages"]["frame.output"]["frames"] == list(range(FRAMES))
    assert np.allclose(np.load(bundle / "mel_filterbank.npy"), audio.mel_filterbank())
    porting = (bundle / "PORTING.md").read_text()
    assert "rounding_not_truncation" in porting and "| `frame.unet_output` |" in porting
    cited = {span for span in re.findall(r"`([^`\n]+)`", porting)
             if span.startswith(("golden/", "models/")) or span in ("pipeline.json", "window.npy", "mel_filterbank.npy", "dump.schema.json")}
    assert {"golden/input.wav", "golden/dataset/", "models/*/unet", "pipeline.json", "dump.schema.json"} <= cited
    assert [span for span in cited if not list(bundle.glob(span.rstrip("/") + ("*" if "*" in span else "")))] == []  # each is in the bundle


def test_porting_guide_lists_every_registered_mistake():
    from synctalk_parity.harness.bundle.build import porting_guide
    from synctalk_parity.harness.verdict.mistakes import MISTAKES

    guide = porting_guide()
    for m in MISTAKES:
        assert f"| {m.title} | `{m.id}` | {m.fix} |" in guide, m.id


def test_pipeline_json_matches_the_reference(bundle: Path):
    constants = json.loads((bundle / "pipeline.json").read_text())
    a = constants["audio"]
    assert (a["sample_rate"], a["preemphasis"]["coefficient"]) == (audio.SAMPLE_RATE, audio.PREEMPHASIS)
    assert (a["stft"]["n_fft"], a["stft"]["hop_length"], a["stft"]["pad_mode"]) == (audio.N_FFT, audio.HOP_LENGTH, audio.DEFAULT_PAD_MODE)
    assert (a["mel"]["fmin"], a["mel"]["fmax"], a["normalization"]["min_level_db"]) == (audio.FMIN, audio.FMAX, audio.MIN_LEVEL_DB)
    w = a["windows"]
    for mel_frames in (16, 17, 95, 96, 801, 1234):
        count = int((mel_frames - w["frames_per_window"]) / w["mel_fps"] * w["video_fps"]) + 2
        assert count == audio.window_count(mel_frames), mel_frames
    schedule = constants["templates"]["schedule"]
    for count in (2, 3, 7, 100):
        assert _schedule_from_json(schedule, 250, count) == template_schedule(250, count), count
    crop = constants["crop"]
    points = np.random.default_rng(0).uniform(100, 600, (frames.LANDMARK_COUNT, 2)).astype(np.float32)
    xmin, ymin, xmax = (int(points[crop["landmark_indices"][k]][i]) for k, i in (("xmin", 0), ("ymin", 1), ("xmax", 0)))
    assert (xmin, ymin, xmax, ymin + xmax - xmin) == frames.crop_box(points)
    assert crop["interpolation"]["opencv_flag"] == frames.INTERPOLATION == cv2.INTER_CUBIC
    rect = constants["unet_input"]["mask_rect"]
    assert (rect["x"], rect["y"], rect["w"], rect["h"]) == frames.MASK_RECT
    assert constants == json.loads(json.dumps({**pipeline_constants(), "bundle": constants["bundle"]}))
    assert constants["bundle"]["weights"]["demo_weights"] is False  # explicit checkpoints given


def test_cut_audio_gives_the_frames_the_features_of_the_whole_clip(bundle: Path, golden: Path):
    from synctalk_parity.models import load_models
    from synctalk_parity.reference.audio import load_audio
    from synctalk_parity.reference.pipeline import ReferencePipeline

    unet, encoder, _ = load_models(*golden_weights())
    whole = ReferencePipeline(unet, encoder).audio_stages(load_audio(golden / "talk_hb_10s.wav"))
    cut = np.load(bundle / "golden" / "audio.features.npy")
    rows = FRAMES + audio.UNET_AUDIO_ROWS // 2  # frame FRAMES-1 reads padded rows up to FRAMES+6
    assert len(cut) < len(whole.features)
    assert np.max(np.abs(cut[:rows] - whole.features[:rows])) <= 1e-6


def test_window_is_the_one_librosa_uses(bundle: Path):
    import librosa

    window = np.load(bundle / "window.npy")
    assert np.array_equal(window, librosa.filters.get_window("hann", audio.WIN_LENGTH, fftbins=True))
    assert np.array_equal(window, hann_window())
    pcm = np.random.default_rng(1).standard_normal(4000).astype(np.float32)
    ours = np.fft.rfft(np.pad(pcm.astype(np.float64), audio.N_FFT // 2)[: audio.N_FFT] * window)
    assert np.allclose(ours, librosa.stft(pcm.astype(np.float64), n_fft=audio.N_FFT, hop_length=audio.HOP_LENGTH,
                                          pad_mode="constant")[:, 0])


@pytest.mark.parametrize("which", ["bundle", "demo_bundle"])
def test_a_port_dump_passes_and_its_mistakes_are_named(which: str, request, tmp_path: Path):
    golden = request.getfixturevalue(which) / "golden"
    port = _port_dump(golden, tmp_path / "port")
    result = runner.invoke(app, ["compare", str(port), "--reference", str(golden)], env=ENV)
    assert result.exit_code == 0, result.output

    mistakes = {
        "channels_swapped": ("frame.unet_input", lambda a: a[[2, 1, 0, 5, 4, 3]]),
        "rounding_not_truncation": ("frame.mouth", None),
        "audio_shifted": ("audio.features", lambda a: np.concatenate([a[1:], a[-1:]])),
    }
    for name, (stage, mistake) in mistakes.items():
        if stage == "frame.mouth":
            mistake = _rounded_mouths(golden)
        wrong = _port_dump(golden, tmp_path / name, {stage: mistake})
        result = runner.invoke(app, ["compare", str(wrong), "--reference", str(golden)], env=ENV)
        assert result.exit_code == 1, result.output
        assert name in result.output, result.output


@pytest.mark.parametrize("which", ["bundle", "demo_bundle"])
def test_onnx_models_reproduce_the_golden_unet_output_without_the_toolkit(which: str, request):
    bundle = request.getfixturevalue(which)
    script = textwrap.dedent("""
        import json, sys
        sys.modules["synctalk_parity"] = None  # the check must need nothing but the bundle
        import numpy as np, onnxruntime as ort
        pipeline = json.load(open("pipeline.json"))
        models = json.load(open("models/onnx-fp32/manifest.json"))
        golden = json.load(open("golden/manifest.json"))
        unet_file = [a["file"] for a in models["artifacts"] if a["network"] == "unet"][0]
        session = ort.InferenceSession("models/onnx-fp32/" + unet_file, providers=["CPUExecutionProvider"])
        names = [t["name"] for t in pipeline["models"]["unet"]["inputs"]]
        output = pipeline["models"]["unet"]["outputs"][0]["name"]
        stages = golden["stages"]
        audio_rows = np.load("golden/" + stages["frame.unet_audio"]["file"])
        worst, checked = 0.0, 0
        for index in stages["frame.unet_input"]["frames"]:
            row = stages["frame.unet_audio"]["frames"].index(index)
            image = np.load("golden/" + stages["frame.unet_input"]["pattern"].format(index=index))
            expected = np.load("golden/" + stages["frame.unet_output"]["pattern"].format(index=index))
            got = session.run([output], {names[0]: image[None], names[1]: audio_rows[row][None]})[0][0]
            worst = max(worst, float(np.max(np.abs(got - expected))))
            checked += 1
        print(checked, worst)
    """)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=bundle, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    checked, worst = done.stdout.split()
    assert int(checked) == 2
    assert float(worst) <= default_gate("fp32").tolerance("frame.unet_output").max_abs


def test_demo_golden_fits_in_an_issue_and_says_what_it_holds(demo_bundle: Path):
    golden = demo_bundle / "golden"
    size = sum(f.stat().st_size for f in golden.rglob("*") if f.is_file())
    assert size < GOLDEN_LIMIT, f"golden/ is {size / 1e6:.1f} MB"
    manifest = json.loads((golden / "manifest.json").read_text())
    assert manifest["frame_count"] == DEMO_FRAMES
    stages = manifest["stages"]
    for name, entry in stages.items():
        if entry["per"] == "frame":
            expected = [0, DEMO_FRAMES - 1] if name in TENSOR_STAGES else list(range(DEMO_FRAMES))
            assert entry["frames"] == expected, name
            assert len(list((golden / name).iterdir()) if entry["layout"] == "files" else np.load(golden / entry["file"])) == len(expected)
    assert set(TENSOR_STAGES) <= set(stages) and "frame.output" in stages and "audio.features" in stages
    porting = (demo_bundle / "PORTING.md").read_text()
    assert "## What `golden/` holds" in porting
    assert "| `frame.unet_input` | 0, 7 | float32 .npy (exact) | fp32 and fp16 gates |" in porting
    assert "| `frame.unet_output` | 0, 7 | float32 .npy (exact) | fp32 and fp16 gates |" in porting
    assert "| `frame.output` | 0..7 (all 8) | 8-bit PNG (lossless) | fp32 and fp16 gates |" in porting
    assert "| `audio.features` | clip | float32 .npy (exact) |" in porting
    assert "stored float32" in porting  # float16 measured and refused: its rounding exceeds the fp32 U-Net output gate
    readme = (demo_bundle / "README.md").read_text()
    assert "for frames 0, 7 only" in readme and "demo weights" in readme


def test_a_port_dumping_every_frame_is_compared_on_the_golden_frames(demo_bundle: Path, tmp_path: Path):
    """The golden dump holds the U-Net tensors of 2 frames; a port holding them for all 8 passes on those 2,
    a port lacking one of those 2 fails, named."""
    from synctalk_parity.harness.verdict.compare import compare_dumps
    from synctalk_parity.harness.verdict.dump import DumpWriter
    from synctalk_parity.harness.verdict.gates import default_gate as gate
    from synctalk_parity.models import load_models
    from synctalk_parity.reference.audio import load_audio
    from synctalk_parity.reference.dataset import open_dataset
    from synctalk_parity.reference.demo_weights import demo_weights
    from synctalk_parity.reference.pipeline import ReferencePipeline

    golden = demo_bundle / "golden"
    pipeline = ReferencePipeline(*load_models(*demo_weights())[:2])
    producer = {"name": "port-under-test", "version": "0", "backend": "torch-eager", "precision": "fp32"}

    clip = pipeline.audio_stages(load_audio(golden / "input.wav"))
    made = list(pipeline.frames(open_dataset(golden / "dataset"), clip, DEMO_FRAMES))  # once: both ports dump these stages

    def port(out: Path, skip_frame: int | None = None) -> Path:
        with DumpWriter(out, producer, DEMO_FRAMES) as writer:
            writer.add_clip(clip.as_dict())
            for stages in made:
                values = stages.as_dict()
                if stages.index == skip_frame:
                    values = {k: v for k, v in values.items() if k != "frame.unet_output"}
                writer.add_frame(stages.index, values, heavy=True)
        return out

    every = port(tmp_path / "every-frame")
    assert json.loads((every / "manifest.json").read_text())["stages"]["frame.unet_input"]["frames"] == list(range(DEMO_FRAMES))
    result = runner.invoke(app, ["compare", str(every), "--reference", str(golden)], env=ENV)
    assert result.exit_code == 0, result.output
    comparison = compare_dumps(golden, every, gate("fp32"))
    compared = {s.stage: s.frames_compared for s in comparison.stages}
    assert compared["frame.unet_input"] == compared["frame.unet_output"] == 2
    assert compared["frame.output"] == DEMO_FRAMES and all(s.passed for s in comparison.stages)

    lacking = port(tmp_path / "lacking", skip_frame=DEMO_FRAMES - 1)
    result = runner.invoke(app, ["compare", str(lacking), "--reference", str(golden)], env=ENV)
    assert result.exit_code == 1, result.output
    assert "frame.unet_output" in result.output and "missing" in result.output, result.output


def test_a_float_input_wav_has_the_same_bytes_whenever_it_is_written(sanders: Path, tmp_path: Path):
    """A bundle's golden/input.wav depends on the audio only: libsndfile's float WAVs carry a PEAK chunk with the time of
    writing, so two builds of one bundle differed in bytes (and a reference cached by the audio's sha256 was made again)."""
    import time

    import soundfile

    from synctalk_parity.harness.bundle.build import _write_golden_inputs
    from synctalk_parity.reference.audio import SAMPLE_RATE, load_audio

    pcm = (load_audio(sanders / "talk_hb.wav")[: SAMPLE_RATE] * np.float32(0.9)).astype(np.float32)  # not 16-bit samples
    source = tmp_path / "float.wav"
    soundfile.write(source, pcm, SAMPLE_RATE, subtype="FLOAT")
    written = []
    for name in ("first", "second"):
        _write_golden_inputs(tmp_path / name, sanders, source, 2)
        written.append((tmp_path / name / "input.wav").read_bytes())
        time.sleep(1.1)  # the PEAK chunk's clock counts seconds
    assert written[0] == written[1]
    held = load_audio(tmp_path / "first" / "input.wav")  # the samples themselves, cut to what 2 frames need
    assert 0 < len(held) < len(pcm) and np.array_equal(held, pcm[: len(held)])


def test_bundle_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["bundle", "--out", str(tmp_path), "--frames", "2"], env=ENV)
    assert result.exit_code == 2
    assert "not a bundle" in result.output and (tmp_path / "keep.txt").is_file()


def _schedule_from_json(schedule: dict, count: int, templates: int) -> list[int]:
    """The schedule as a port would code it from pipeline.json's formula."""
    assert schedule["formula"].startswith("idx = 0, step = 0") and schedule["first"] == 1
    idx, step, out = 0, 0, []
    for _ in range(count):
        if idx > templates - 2:
            step = -1
        if idx < 1:
            step = 1
        idx += step
        out.append(idx)
    return out


def _rounded_mouths(golden: Path):
    """Mouths rounded instead of truncated, on the frames whose U-Net output the golden dump holds (others unchanged)."""
    manifest = json.loads((golden / "manifest.json").read_text())
    entry = manifest["stages"]["frame.unet_output"]

    def rounded(mouth: np.ndarray, index: int) -> np.ndarray:
        if index not in entry["frames"]:
            return mouth
        output = np.load(golden / entry["pattern"].format(index=index))
        return np.round(output.transpose(1, 2, 0) * np.float32(255)).astype(np.uint8)

    return rounded


def _port_dump(golden: Path, out: Path, mistakes: dict | None = None) -> Path:
    """A dump as a Go or Swift port writes it: plain .npy, cv2.imwrite PNGs and a hand-made manifest."""
    mistakes = mistakes or {}
    source = json.loads((golden / "manifest.json").read_text())
    stages = {}
    for name, entry in source["stages"].items():
        mistake = mistakes.get(name)
        if entry["per"] == "clip" or entry["layout"] == "stacked":
            array = np.load(golden / entry["file"])
            if mistake is not None:
                array = mistake(array)
            out.mkdir(parents=True, exist_ok=True)
            np.save(out / f"{name}.npy", array)
            stages[name] = {**{k: v for k, v in entry.items() if k != "file"}, "file": f"{name}.npy"}
            continue
        suffix = ".png" if name in IMAGE_STAGES else ".npy"
        (out / name).mkdir(parents=True, exist_ok=True)
        for index in entry["frames"]:
            source_file = golden / entry["pattern"].format(index=index)
            array = cv2.imread(str(source_file), cv2.IMREAD_COLOR) if suffix == ".png" else np.load(source_file)
            if mistake is not None:
                array = mistake(array, index) if name == "frame.mouth" else mistake(array)
            target = out / name / f"{index:05d}{suffix}"
            cv2.imwrite(str(target), array) if suffix == ".png" else np.save(target, array)
        stages[name] = {**entry, "pattern": name + "/{index:05d}" + suffix}
    manifest = {"schema": "synctalk-parity/dump", "schema_version": 1,
                "producer": {"name": "go-port-under-test", "version": "0.0.1", "backend": "onnxruntime-go", "precision": "fp32"},
                "frame_count": source["frame_count"], "stages": stages}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
