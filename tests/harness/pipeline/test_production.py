"""The production pipeline: the reference's frames on any backend, and failures that stop it cleanly."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import soundfile as sf

from synctalk_parity.backends import ModelSource, create_backend
from synctalk_parity.errors import ParityError
from synctalk_parity.harness.pipeline.production import ProductionPipeline
from synctalk_parity.harness.verdict.compare import compare_dumps
from synctalk_parity.harness.verdict.dump import DumpWriter
from synctalk_parity.harness.verdict.gates import load_gate
from synctalk_parity.models import load_models
from synctalk_parity.reference import frames as frame_stages
from synctalk_parity.reference.audio import load_audio
from synctalk_parity.reference.dataset import open_dataset
from synctalk_parity.reference.pipeline import ReferencePipeline

FRAMES = 5  # covers batch 4 plus a remainder batch of 1
PRODUCER = {"name": "test", "version": "0", "backend": "x", "precision": "fp32"}


@pytest.fixture(scope="module")
def golden_run(golden, sanders):
    """The reference's first frames on the real dataset with the golden weights."""
    unet_path, encoder_path = golden / "weights" / "unet_328_ave.pth", golden / "weights" / "audio_visual_encoder.pth"
    unet, encoder, _ = load_models(unet_path, encoder_path)
    reference = ReferencePipeline(unet, encoder)
    dataset = open_dataset(sanders)
    pcm = load_audio(golden / "talk_hb_10s.wav")
    clip = reference.audio_stages(pcm)
    return {
        "source": ModelSource.from_paths(unet_path, encoder_path),
        "dataset": dataset,
        "pcm": pcm,
        "clip": clip,
        "reference": list(reference.frames(dataset, clip, FRAMES)),
    }


def _pipeline_frames(backend_name, golden_run, batch):
    with create_backend(backend_name, golden_run["source"]) as backend:
        pipeline = ProductionPipeline(backend, batch=batch)
        clip = pipeline.audio_stages(golden_run["pcm"])
        made = []
        pipeline.run(golden_run["dataset"], clip, FRAMES, made.append)
    return clip, made


@pytest.mark.slow
def test_torch_batch_1_makes_the_reference_frames_bit_for_bit(golden_run):
    clip, made = _pipeline_frames("torch", golden_run, batch=1)
    assert np.array_equal(clip.features, golden_run["clip"].features)
    assert [f.index for f in made] == list(range(FRAMES))
    for ours, theirs in zip(made, golden_run["reference"]):
        for stage, value in theirs.as_dict().items():
            assert np.array_equal(ours.as_dict()[stage], value), f"frame {ours.index}: {stage} differs"


@pytest.mark.slow
def test_torch_batch_4_matches_the_reference(golden_run):
    """Everything but the U-Net is bit for bit; batched oneDNN convolutions may move the U-Net
    output by a few float32 ulps (measured 4e-7), which can flip a truncated pixel by one level."""
    clip, made = _pipeline_frames("torch", golden_run, batch=4)
    assert np.array_equal(clip.features, golden_run["clip"].features)
    for ours, theirs in zip(made, golden_run["reference"]):
        assert ours.template_index == theirs.template_index and ours.crop_box == theirs.crop_box
        for stage in ("crop_328", "unet_audio", "unet_input"):
            assert np.array_equal(getattr(ours, stage), getattr(theirs, stage)), f"frame {ours.index}: {stage} differs"
        assert np.abs(ours.unet_output - theirs.unet_output).max() <= 1e-5
        # the stages after the network are the reference's functions of this pipeline's network output
        assert np.array_equal(ours.mouth, frame_stages.mouth_from_output(ours.unet_output))
        assert np.array_equal(ours.pasted_region, frame_stages.pasted_region(ours.crop_328, ours.mouth, ours.crop_box))
        diff = np.abs(ours.output.astype(np.int16) - theirs.output)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.9999


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_is_within_the_fp32_gate(golden_run, tmp_path, batch):
    clip, made = _pipeline_frames("onnxruntime", golden_run, batch=batch)
    dumps = {}
    for name, clip_stages, frames in (("reference", golden_run["clip"], golden_run["reference"]), ("candidate", clip, made)):
        with DumpWriter(tmp_path / name, PRODUCER, FRAMES, "all") as writer:
            writer.add_clip(clip_stages.as_dict())
            for stages in frames:
                writer.add_frame(stages.index, stages.as_dict())
        dumps[name] = tmp_path / name
    comparison = compare_dumps(dumps["reference"], dumps["candidate"], load_gate(None, "fp32"))
    assert comparison, comparison.failures
    assert comparison.stage("frame.output").frames_compared == FRAMES


# ----- failures: raised in the caller, no thread left behind, no hang -----------------------------


@pytest.fixture
def tiny_inputs(tmp_path):
    """A two-template 64 x 64 dataset and one second of audio (made here, no shared data needed)."""
    root = tmp_path / "tiny"
    (root / "full_body_img").mkdir(parents=True)
    (root / "landmarks").mkdir()
    rng = np.random.default_rng(0)
    points = np.zeros((110, 2), np.float32)
    points[1], points[31], points[52] = (8, 30), (40, 30), (24, 8)  # crop box (8, 8, 40, 40)
    for i in range(2):
        cv2.imwrite(str(root / "full_body_img" / f"{i}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        (root / "landmarks" / f"{i}.lms").write_text("\n".join(f"{x} {y}" for x, y in points) + "\n")
    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    dataset = open_dataset(root)
    unet, encoder, _ = load_models(None, None)
    clip = ReferencePipeline(unet, encoder).audio_stages(load_audio(wav))
    return dataset, clip


def _threads_before():
    return set(threading.enumerate())


def _assert_no_thread_left(before):
    time.sleep(0.05)
    assert set(threading.enumerate()) <= before


def test_an_unreadable_template_stops_the_run_with_its_name(tiny_inputs):
    dataset, clip = tiny_inputs
    dataset.templates[1].image_path.write_bytes(b"not an image")  # the schedule starts at template 1
    before = _threads_before()
    with create_backend("torch") as backend, pytest.raises(ParityError, match="1.png: cannot decode"):
        ProductionPipeline(backend, batch=2).run(dataset, clip, 4, lambda frame: None)
    _assert_no_thread_left(before)


def test_a_failing_frame_writer_stops_the_run(tiny_inputs):
    dataset, clip = tiny_inputs
    written = []

    def sink(frame):
        if frame.index == 1:
            raise OSError("disk full")
        written.append(frame.index)

    before = _threads_before()
    with create_backend("torch") as backend, pytest.raises(OSError, match="disk full"):
        ProductionPipeline(backend, batch=1).run(dataset, clip, clip.frame_count, sink)
    assert written == [0]
    _assert_no_thread_left(before)


def test_a_failing_backend_stops_the_reader_and_the_writer(tiny_inputs):
    dataset, clip = tiny_inputs
    backend = create_backend("torch")  # never loaded: generate() refuses
    before = _threads_before()
    with pytest.raises(RuntimeError, match="before load"):
        ProductionPipeline(backend, batch=1).run(dataset, clip, clip.frame_count, lambda frame: None)
    _assert_no_thread_left(before)


def test_frames_arrive_in_order_with_a_partial_last_batch(tiny_inputs):
    dataset, clip = tiny_inputs
    made = []
    with create_backend("torch") as backend:
        timing = ProductionPipeline(backend, batch=2).run(dataset, clip, 3, made.append)
    assert [f.index for f in made] == [0, 1, 2]
    assert [f.template_index for f in made] == dataset.schedule(3)
    assert all(f.output.shape == (64, 64, 3) for f in made)
    assert timing.frames == 3 and timing.seconds["infer"] > 0


def test_batch_must_be_positive():
    with pytest.raises(ParityError, match="--batch"):
        ProductionPipeline(create_backend("torch"), batch=0)


@pytest.mark.slow
def test_onnxruntime_streams_hand_frames_on_in_order_equal_to_one_call_at_a_time(golden_run):
    """Two U-Net calls at once (the default on 2 CPUs) finish in any order; the writer gets frames 0, 1, 2, ... with
    each frame's own mouth: equal bit for bit to one call at a time, and within the fp32 gate of the reference."""
    made = {}
    for streams in ("1", "2"):
        with create_backend("onnxruntime", golden_run["source"], streams=streams) as backend:
            pipeline = ProductionPipeline(backend, batch=1)
            frames = []
            pipeline.run(golden_run["dataset"], pipeline.audio_stages(golden_run["pcm"]), FRAMES, frames.append)
        made[streams] = frames
    assert [f.index for f in made["2"]] == list(range(FRAMES))
    for one, two, reference in zip(made["1"], made["2"], golden_run["reference"]):
        assert np.array_equal(one.output, two.output), f"frame {one.index}"
        assert np.abs(two.unet_output - reference.unet_output).max() < 1e-4, f"frame {two.index}"
