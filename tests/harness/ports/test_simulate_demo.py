"""The simulator is the reference pipeline: on the built-in demo avatar (no golden data), with the fixture
networks, `Variant()` makes the reference's frames bit for bit, and every knob it can turn reaches the frames.

The simulator runs the reference's own stage functions with other knob values and caches what it can (features
per front end, U-Net outputs by input hash, template images per geometry); these tests fail if a knob is left
out of a cache key (two front ends sharing features) or is catalogued but has no effect.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields

import numpy as np
import pytest

from synctalk_parity.harness.ports.simulate import HYPOTHESES, RECOVERED_KNOBS, Simulator, Variant, recovered_boxes, recovered_templates
from synctalk_parity.reference.audio import AudioFrontEnd, load_audio
from synctalk_parity.reference.dataset import open_dataset
from synctalk_parity.reference.demo import make_demo
from synctalk_parity.reference.execution import emulated_runner
from synctalk_parity.reference.pipeline import ReferencePipeline

SECONDS = 1.0  # 22 encoder windows, 24 output frames


class Demo:
    def __init__(self, root):
        from synctalk_parity.models import fixture_audio_encoder, fixture_unet

        demo = make_demo(root, templates=4, seconds=SECONDS, seed=3)
        self.dataset = open_dataset(demo.dataset_dir)
        self.pipeline = ReferencePipeline(fixture_unet(seed=1), fixture_audio_encoder(seed=1))
        self.network, self.pipeline.generate = self.pipeline.generate, self._unet  # type: ignore[method-assign]
        self.outputs: dict[bytes, np.ndarray] = {}
        self.clip = self.pipeline.audio_stages(load_audio(demo.audio_path))
        self.schedule = self.dataset.schedule(self.clip.frame_count)
        self.sample = (0, 1, self.clip.frame_count - 1)
        self.frames = {i: self.pipeline.frame(self.dataset, self.clip.features, i, self.schedule[i]) for i in self.sample}
        self.simulator = Simulator(self.dataset, self.clip.pcm, self._generate, self.pipeline.encode_audio,
                                   generate_at=lambda precision: emulated_runner(self.pipeline.unet, precision))

    def _unet(self, image: np.ndarray, unet_audio: np.ndarray) -> np.ndarray:
        """The reference U-Net, run once per input: the simulator's frames reuse the reference's outputs."""
        key = hashlib.sha1(image.tobytes() + unet_audio.tobytes()).digest()
        if key not in self.outputs:
            self.outputs[key] = self.network(image, unet_audio)
        return self.outputs[key]

    def _generate(self, images: np.ndarray, unet_audio: np.ndarray) -> np.ndarray:
        return np.stack([self.pipeline.generate(x, a) for x, a in zip(images, unet_audio)])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    return Demo(tmp_path_factory.mktemp("demo") / "avatar")


def test_the_reference_variant_makes_the_reference_pipelines_frames_bit_for_bit(demo):
    simulator, runs = demo.simulator, demo.simulator.unet_runs
    assert simulator.frame_count(Variant()) == demo.clip.frame_count == 24
    for stages in simulator.stages(Variant(), demo.sample):
        theirs = demo.frames[stages.index]
        assert (stages.template_index, stages.crop_box) == (theirs.template_index, theirs.crop_box)
        for name in ("crop_328", "unet_input", "unet_audio", "unet_output", "mouth", "pasted_region", "output"):
            assert np.array_equal(getattr(stages, name), getattr(theirs, name)), name
    assert simulator.unet_runs - runs <= len(demo.sample) and len(demo.outputs) == len(demo.sample)  # the same inputs, bit for bit


def _another_value(knob, value):
    """A valid value other than `value` for the front-end field `knob`, from the field itself."""
    choices = knob.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    pytest.fail(f"AudioFrontEnd.{knob.name}: declare its values with reference.knobs.choice, or teach this test its type")


@pytest.mark.parametrize("knob", fields(AudioFrontEnd), ids=lambda knob: knob.name)
def test_every_front_end_knob_makes_its_own_features(demo, knob):
    """Features are cached per front end: a front end differing in any one field must not get the reference's."""
    reference = Variant()
    changed = Variant(front_end=AudioFrontEnd(**{knob.name: _another_value(knob, getattr(reference.front_end, knob.name))}))
    simulator = demo.simulator
    before = {i: simulator.inputs(reference, i).unet_audio for i in (0, simulator.frame_count(reference) - 1)}  # cached first
    assert changed.front_end != reference.front_end and changed.front_end.parts() != reference.front_end.parts()
    if simulator.frame_count(changed) != simulator.frame_count(reference):
        return
    after = {i: simulator.inputs(changed, i).unet_audio for i in before}
    assert any(not np.array_equal(before[i], after[i]) for i in before), f"front_end.{knob.name} does not reach the features"


def test_every_knob_is_searched_by_a_catalogued_hypothesis():
    """Or set from what the port's frames show: the recovered template sequence (`sources.py`), never searched."""
    searched = set().union(*(h.fields for h in HYPOTHESES))
    assert not searched & RECOVERED_KNOBS
    assert searched | RECOVERED_KNOBS == set(Variant().knobs()), set(Variant().knobs()) ^ (searched | RECOVERED_KNOBS)


def test_the_recovered_template_sequence_reaches_the_frames(demo):
    simulator = demo.simulator
    count = simulator.frame_count(Variant())
    reversed_ = tuple(simulator.template_index(Variant(), i) for i in range(count))[::-1]
    variant = recovered_templates(reversed_)(Variant())
    assert [simulator.inputs(variant, i).template_index for i in range(count)] == list(reversed_)


def test_a_recovered_box_sequence_reaches_the_frames_it_covers(demo):
    """`geometry.box_sequence`: frame i is cropped and pasted in template `box_sequence[i]`'s box; -1 and the frames past
    its end keep their own template's."""
    simulator = demo.simulator
    templates = [simulator.template_index(Variant(), i) for i in range(3)]
    variant = recovered_boxes((-1, templates[1] + 1))(Variant())
    boxes = [simulator.inputs(variant, i).crop_box for i in range(3)]
    assert boxes == [demo.dataset.templates[templates[0]].box, demo.dataset.templates[templates[1] + 1].box, demo.dataset.templates[templates[2]].box]
    assert boxes[1] != demo.dataset.templates[templates[1]].box and simulator.box(variant, 1) == boxes[1]
    assert not np.array_equal(simulator.frames(variant, [1])[1], demo.frames[1].output)


@pytest.mark.parametrize("hypothesis", HYPOTHESES, ids=lambda h: h.name)
def test_every_hypothesis_changes_the_simulated_frames(demo, hypothesis):
    """Each catalogued mistake reaches the frames the simulator makes (before the network: its inputs, so no
    U-Net run; the network's own knobs: its outputs, cached apart from the reference's (fp16 on this seeded U-Net
    moves no output pixel by a level: whether a precision shows in the frames is the judging tests'); after it: the output frames,
    from the cached U-Net outputs)."""
    simulator, reference, variant = demo.simulator, Variant(), hypothesis(Variant())
    if simulator.frame_count(variant) != simulator.frame_count(reference):
        return
    sample = (0, 1, simulator.frame_count(variant) - 1)
    if any(name.startswith("network.") for name in hypothesis.fields):
        changed = simulator.stages(variant, sample)
        assert all(not np.array_equal(stages.unet_output, demo.frames[stages.index].unet_output) for stages in changed), hypothesis.name
        again = simulator.stages(reference, sample)  # the reference's outputs are still its own: the precision is in the cache key
        assert all(np.array_equal(stages.unet_output, demo.frames[stages.index].unet_output) for stages in again)
        return
    if hypothesis.after_network:
        changed = simulator.frames(variant, sample)
        assert any(not np.array_equal(changed[i], demo.frames[i].output) for i in sample), hypothesis.name
        return

    def seen(v, i):
        inputs = simulator.inputs(v, i)
        return inputs.template_index, inputs.crop_box, inputs.unet_input.tobytes(), inputs.unet_audio.tobytes()

    assert any(seen(variant, i) != seen(reference, i) for i in sample), hypothesis.name


def test_the_temporal_processing_of_the_features_is_searched_as_fitted_parameters():
    """Shift, held rows and smoothing are one family each, a hypothesis per value of one knob (the search fits the
    value); the end padding is a plain hypothesis; each is a form of its own registered mistake."""
    families: dict[str, set] = {}
    for h in HYPOTHESES:
        if h.family is not None:
            (knob, value), = h.changes
            families.setdefault(h.family, set()).add((knob, value, h.mistake))
    assert {family: {knob for knob, _, _ in values} for family, values in families.items()} == {
        "audio_shift": {"audio_window.shift"}, "audio_hold": {"audio_window.hold"}, "audio_smoothed": {"audio_window.smoothing"}}
    assert {value for _, value, _ in families["audio_shift"]} == {1, -1, 2, -2, 3, -3, 4, -4}
    assert {family: {m for _, _, m in values} for family, values in families.items()} == {
        "audio_shift": {"audio_shifted"}, "audio_hold": {"audio_rows_repeated"}, "audio_smoothed": {"audio_smoothed"}}
    from synctalk_parity.harness.ports.simulate import HYPOTHESES_BY_NAME

    assert HYPOTHESES_BY_NAME["audio_edge_repeat"].family is None and HYPOTHESES_BY_NAME["audio_shift_+2"].family == "audio_shift"


def test_the_simulation_samples_the_frames_of_most_evidence_spread_over_the_clip():
    from synctalk_parity.harness.ports.simulate import evidence_sample

    mouth_db = dict.fromkeys(range(40), 100.0)  # identical to the reference but for three frames
    mouth_db.update({3: 30.0, 5: 25.0, 22: 40.0})
    assert evidence_sample(mouth_db, 4) == [5, 15, 22, 35]  # spans 0-9, 10-19, 20-29, 30-39; an identical span: its middle
    assert evidence_sample({7: 50.0, 8: 20.0}, 4) == [7, 8]


def test_streams_run_the_unet_calls_at_once_and_make_the_same_frames(demo):
    """`streams=2` (what `parity compare` gives the simulator of ONNX Runtime on 2 CPUs): `prefetch` runs the U-Net for
    the frames asked in calls that run at once (each of the first two waits, up to 60 s, until the other has begun: one
    call at a time fails here), and the frames and U-Net runs are those of one call at a time. With one stream there is
    nothing to prefetch."""
    import threading

    both, began = threading.Barrier(2, timeout=60), []

    def generate(images, unet_audio):
        if len(began) < 2:
            began.append(threading.get_ident())
            both.wait()
        return demo._generate(images, unet_audio)

    variants = [Variant().with_knobs({"audio_window.shift": shift}) for shift in (1, 2)]  # U-Net inputs no test ran before
    one = Simulator(demo.dataset, demo.clip.pcm, demo._generate, demo.pipeline.encode_audio)
    two = Simulator(demo.dataset, demo.clip.pcm, generate, demo.pipeline.encode_audio, streams=2)
    one.prefetch((variant, demo.sample) for variant in variants)
    assert one.unet_runs == 0
    two.prefetch((variant, demo.sample) for variant in variants)
    assert len(set(began)) == 2 and two.unet_runs > 0
    runs = two.unet_runs
    for variant in variants:
        ours, theirs = two.frames(variant, demo.sample), one.frames(variant, demo.sample)
        assert all(np.array_equal(ours[i], theirs[i]) for i in demo.sample)
    assert two.unet_runs == one.unet_runs == runs  # the prefetched outputs were used: no run twice
