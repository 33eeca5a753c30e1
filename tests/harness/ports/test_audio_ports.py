"""Audio-path mistakes named from what a port writes: with the demo weights (listening test weights: the mouth follows
the speech) a port that gets the audio path wrong makes other mouths, and the simulation names the mistake from its
frames alone, each one and two at once, the temporal ones (shift, held rows, smoothing, end padding) with the value
of their parameter fitted. Ports are the simulation's own `Variant`s with the mistake's knobs (on ONNX Runtime, as
the search runs them); the search is the one `parity compare` runs, over the frames it samples. Two ports go through
`parity compare` end to end: PNG frames, and an mp4 with its sound.

Not here, because no frame shows them (docs/listening-weights.md, *What they cannot show*): `symmetric_window` and
`stft_other_pad_mode`."""

from __future__ import annotations

import numpy as np
import pytest

from synctalk_parity.harness.ports.simulate import NOISE_FLOOR_DB, evidence_sample, explain
from synctalk_parity.harness.verdict.metrics import squared_error

from .conftest import write_png_port

pytestmark = pytest.mark.slow

ALONE = [  # (knobs, registered mistake, fitted knob value or None)
    ({"front_end.center": False}, "stft_no_center", None),
    ({"front_end.preemphasis": 0.0}, "no_preemphasis", None),
    ({"front_end.spectrum": "power"}, "power_spectrum", None),
    ({"front_end.mel_scale": "htk"}, "htk_mel", None),
    ({"front_end.ref_level_db": 0.0}, "no_ref_level", None),
    ({"front_end.mel_range": "[0,4]"}, "mel_range_0_4", None),
    ({"front_end.padded": False}, "audio_dropped", None),
    ({"audio_window.source": "zero"}, "ghost_audio", None),
    ({"audio_window.source": "constant"}, "ghost_audio", None),
    ({"audio_window.source": "tiled"}, "audio_tiled", None),
    ({"audio_window.shift": 3}, "audio_shifted", 3),
    ({"audio_window.shift": -1}, "audio_shifted", -1),
    ({"audio_window.hold": 2}, "audio_rows_repeated", 2),
    ({"audio_window.smoothing": 5}, "audio_smoothed", 5),
    ({"audio_window.edge": "repeat"}, "audio_edge_repeated", "repeat"),
]
PAIRS = [
    ({"front_end.preemphasis": 0.0, "audio_window.shift": -2}, {"no_preemphasis", "audio_shifted"}),
    ({"audio_window.smoothing": 3, "audio_window.shift": 1}, {"audio_smoothed", "audio_shifted"}),
    ({"front_end.padded": False, "audio_window.hold": 2}, {"audio_dropped", "audio_rows_repeated"}),
    # the greedy search takes these for a shift of -2 (38.1 dB, not explained); the revision searches again without the shift
    ({"front_end.spectrum": "power", "audio_window.hold": 3}, {"power_spectrum", "audio_rows_repeated"}),
]
SIMULATION_FRAMES = 4  # as the port judge samples them


def judge_frames(demo_ports, knobs: dict):
    """The port's frames, as written and read back (PNG is lossless), searched as the port judge searches them: on the
    frames of most evidence (the mouth box's PSNR against the reference's, `evidence_sample`)."""
    from synctalk_parity.harness.ports.simulate import Variant
    from synctalk_parity.reference.frames import mouth_box

    variant = Variant().with_knobs(knobs)
    count = demo_ports.simulator.frame_count(variant)
    frames, reference = demo_ports.frames(knobs), demo_ports.frames()
    mouth_db = {}
    for i in range(min(count, len(reference))):
        x0, y0, x1, y1 = mouth_box(demo_ports.simulator.box(Variant(), i))
        diff = frames[i][y0:y1, x0:x1].astype(np.int16) - reference[i][y0:y1, x0:x1]
        mouth_db[i] = squared_error(diff).psnr
    sample = evidence_sample(mouth_db, SIMULATION_FRAMES)
    return explain(demo_ports.simulator, {i: frames[i] for i in sample}, sample=sample, candidate_frame_count=count)


@pytest.fixture(scope="module")
def judged(demo_ports):
    """`judge_frames` once per port in this module: the revision test reads the judgments of two of the PAIRS ports,
    which that test already made (the same frames, the same deterministic search; U-Net outputs are cached by the
    simulator, but the search itself was made twice: 9 s of the module's CPU)."""
    made = {}

    def judge(knobs: dict):
        key = tuple(sorted(knobs.items()))
        if key not in made:
            made[key] = judge_frames(demo_ports, knobs)
        return made[key]

    return judge


def named(explanation) -> list[str]:
    return [f.mistake.id for f in explanation.findings]


@pytest.mark.parametrize(("knobs", "expected", "value"), ALONE, ids=[m for _, m, v in ALONE])
def test_each_audio_mistake_alone_is_named_from_the_frames(demo_ports, knobs, expected, value):
    explanation = judge_frames(demo_ports, knobs)
    assert explanation.initial.box_db < NOISE_FLOOR_DB, "the mistake does not show in the sampled frames"
    assert named(explanation) == [expected], explanation.summary()
    assert explanation.explained and explanation.identical, explanation.summary()
    finding = explanation.findings[0]
    assert "named by the count alone" not in finding.evidence and finding.after.box_db > finding.before.box_db + 1
    if value is not None:
        assert dict(finding.hypothesis.changes) == {next(iter(knobs)): value}  # the parameter's value fitted
        if finding.hypothesis.family:
            assert f"fitted {next(iter(knobs))} = " in finding.evidence


@pytest.mark.parametrize(("knobs", "expected"), PAIRS, ids=["+".join(sorted(p.values[1] if hasattr(p, "values") else p[1])) for p in PAIRS])
def test_two_audio_mistakes_at_once_are_both_named(judged, knobs, expected):
    explanation = judged(knobs)
    assert set(named(explanation)) == expected and len(explanation.findings) == 2, explanation.summary()
    assert explanation.identical, explanation.summary()
    assert explanation.variant.differences() == knobs


@pytest.mark.parametrize(("knobs", "revised"), [
    ({"front_end.spectrum": "power", "audio_window.hold": 3}, True),
    ({"front_end.preemphasis": 0.0, "audio_window.shift": -2}, False),
], ids=["greedy-not-explained", "greedy-explains"])
def test_a_revised_finding_says_what_it_replaced_with_both_scores(judged, knobs, revised):
    explanation = judged(knobs)
    if not revised:  # the greedy search explained the frames: nothing is revised, and no time is spent on it
        assert explanation.revisions == () and explanation.revision_seconds == 0 and "revised:" not in explanation.summary()
        return
    assert len(explanation.revisions) == 1 and explanation.revision_seconds > 0, explanation.summary()
    note = explanation.revisions[0]
    assert note.startswith("audio_shift_-2 replaced by audio_hold_3, power_spectrum: "), note
    assert "crop box 38.1 dB" in note and "(not explained)" in note and "crop box identical" in note and "(explained" in note, note
    assert f"revised: {note}" in explanation.summary()


def test_a_port_with_smoothed_and_shifted_features_is_named_by_parity_compare(demo_ports, tmp_path):
    knobs = {"audio_window.smoothing": 3, "audio_window.shift": 1}
    port = write_png_port(tmp_path / "port", demo_ports.frames(knobs))
    result, data = demo_ports.compare(port, tmp_path / "verdict")
    assert result.exit_code == 1, result.output
    findings = data["port"]["simulation"]["findings"]
    assert {f["mistake"] for f in findings} == {"audio_smoothed", "audio_shifted"}, data["port"]["simulation"]["summary"]
    assert {"simulated:audio_smoothed", "simulated:audio_shifted"} <= {d["name"] for d in data["comparison"]["diagnoses"]}
    assert data["port"]["simulation"]["explained"] and all(f["fix"] for f in findings)
    assert data["lip_sync"]["offset_frames"] == -1  # the mouth one frame early, from the frames too


def test_a_port_video_that_holds_feature_rows_is_named_from_its_frames(demo_ports, tmp_path):
    from synctalk_parity.reference.video import VideoWriter

    frames = demo_ports.frames({"audio_window.hold": 2})
    video = tmp_path / "port.mp4"
    with VideoWriter(video, demo_ports.dataset.frame_size, audio=demo_ports.wav) as writer:
        for index in range(len(frames)):
            writer.write(frames[index])
    result, data = demo_ports.compare(video, tmp_path / "verdict")
    assert result.exit_code == 1, result.output
    findings = data["port"]["simulation"]["findings"]
    assert findings and findings[0]["mistake"] == "audio_rows_repeated", data["port"]["simulation"]["summary"]
    assert findings[0]["name"] == "audio_hold_2"
