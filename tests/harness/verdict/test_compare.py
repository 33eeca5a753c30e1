"""compare_dumps on synthetic dumps: metrics are right, gates decide, failures say where and by how much."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from synctalk_parity.cli.view import comparison_lines, comparison_table
from synctalk_parity.errors import ParityError
from synctalk_parity.harness.verdict.compare import compare_dumps
from synctalk_parity.harness.verdict.gates import load_gate
from synctalk_parity.harness.verdict.result import relative_comparison, to_json
from synctalk_parity.harness.verdict.types import PSNR_IDENTICAL
from synctalk_parity.reference.stages import STAGE_NAMES

from ..conftest import synthetic_stages, write_dump


def _pair(tmp_path, edit=None, frame_count=5, candidate_frames=(0, 1, 2)):
    clip, rows = synthetic_stages()
    reference = write_dump(tmp_path / "ref", clip, rows, frame_count=5)
    clip2, rows2 = synthetic_stages()
    if edit:
        edit(clip2, rows2)
    rows2 = [r for r in rows2 if r["index"] in candidate_frames]
    candidate = write_dump(tmp_path / "cand", clip2, rows2, frame_count=frame_count)
    return reference, candidate


def test_identical_dumps_pass_with_exact_metrics(tmp_path):
    reference, candidate = _pair(tmp_path)
    comparison = compare_dumps(reference, candidate, load_gate(None))
    assert comparison and comparison.first_divergent_stage is None and comparison.diagnoses == []
    assert [s.stage for s in comparison.stages] == list(STAGE_NAMES)
    for stage in comparison.stages:
        assert stage.passed and stage.max_abs == 0 and stage.identical == 1.0 and stage.nan == 0, stage.stage
    output = comparison.stage("frame.output")
    assert output.psnr == PSNR_IDENTICAL and output.ssim == 1.0 and output.frames_compared == 3
    assert output.per_frame.frames == [0, 1, 2] and output.per_frame.psnr == [PSNR_IDENTICAL] * 3
    assert comparison.stage("audio.features").cosine == pytest.approx(1.0)
    data = json.loads(json.dumps(to_json(relative_comparison(comparison, tmp_path)), allow_nan=False))
    assert data["passed"] is True and data["reference"] == "ref" and data["worst_frame"]["candidate_png"] == "cand/frame.output/00000.png"


def test_unet_output_failure_names_frame_index_values_and_tolerance(tmp_path):
    def edit(clip, rows):
        rows[1]["frame.unet_output"][2, 140, 66] += 3e-3
        rows[2]["frame.unet_output"][0, 0, 0] += 5e-5  # within 1e-4

    comparison = compare_dumps(*_pair(tmp_path, edit), load_gate(None))
    assert not comparison and comparison.first_divergent_stage == "frame.unet_output"
    stage = comparison.stage("frame.unet_output")
    assert stage.max_abs == pytest.approx(3e-3, rel=1e-3)
    assert stage.worst.frame == 1 and stage.worst.index == [2, 140, 66]
    assert "1 of 921,600 elements (0.00%) exceed max |diff| 0.0001" in stage.failure
    assert "at frame 1, index (2, 140, 66): reference" in stage.failure
    assert stage.per_frame.max_abs[0] == 0 and stage.per_frame.max_abs[1] == pytest.approx(3e-3, rel=1e-3)
    assert stage.psnr > 50  # one element off: PSNR stays high, the max |diff| gate catches it


def test_image_metrics_psnr_identical_share_and_p99(tmp_path):
    def edit(clip, rows):
        output = rows[0]["frame.output"]
        output[:4, :, 0] = np.clip(output[:4, :, 0].astype(int) + 10, 0, 255).astype(np.uint8)  # 4 of 48 rows

    comparison = compare_dumps(*_pair(tmp_path, edit), load_gate(None))
    stage = comparison.stage("frame.output")
    assert not stage.passed and comparison.first_divergent_stage == "frame.output"
    changed = int(np.count_nonzero(synthetic_stages()[1][0]["frame.output"][:4, :, 0] != 255))
    assert stage.identical == pytest.approx(1 - changed / (3 * 48 * 64))
    assert stage.max_abs == 10 and stage.p99 == 0
    assert stage.per_frame.psnr[1:] == [PSNR_IDENTICAL, PSNR_IDENTICAL] and stage.per_frame.psnr[0] < 50
    assert stage.ssim < 1.0 and "of pixels identical, gate needs >= 99.900%" in stage.failure
    assert comparison.worst_frame.index == 0


def test_shape_mismatch_nan_frame_count_and_missing_frames(tmp_path):
    def edit(clip, rows):
        rows[0]["frame.crop_328"] = rows[0]["frame.crop_328"][:320, :320]
        rows[2]["frame.unet_output"][0, 1, 2] = np.nan
        clip["audio.features"] = clip["audio.features"][:4]

    comparison = compare_dumps(*_pair(tmp_path, edit, frame_count=4), load_gate(None))
    assert comparison.first_divergent_stage == "audio.features"
    assert "shape mismatch: candidate [4, 512], reference [5, 512]" in comparison.stage("audio.features").failure
    crop = comparison.stage("frame.crop_328")
    assert "frame 0: shape mismatch: candidate [320, 320, 3], reference [328, 328, 3]" in crop.failure and "328 x 328" in crop.failure
    unet = comparison.stage("frame.unet_output")
    assert unet.nan == 1 and "1 NaN and 0 Inf values (first at frame 2, index (0, 1, 2))" in unet.failure
    assert "frame count: the candidate makes 4 output frames, the reference 5" in comparison.failures
    json.dumps(to_json(comparison), allow_nan=False)


def test_frames_the_candidate_lacks_fail_by_name_and_gates_can_loosen(tmp_path):
    def edit(clip, rows):
        rows[0]["frame.unet_output"] += np.float32(5e-3)

    reference, candidate = _pair(tmp_path, edit, candidate_frames=(1, 2))  # frame 0, the one that differs, left out
    comparison = compare_dumps(reference, candidate, load_gate(None))
    output = comparison.stage("frame.output")
    assert not comparison and output.frames_compared == 2 and output.frames_missing == 1 and not output.passed
    assert "frame.output: 1 of 3 frames missing from the candidate (0)" in output.failure
    assert comparison.coverage == "13 of 13 stages, 2 of 3 frames compared"
    reference, candidate = _pair(tmp_path / "b", edit)
    assert not compare_dumps(reference, candidate, load_gate(None))
    gate = tmp_path / "gate.toml"
    gate.write_text('[stages."frame.unet_output"]\nmax_abs = 1e-2\n')
    loose = compare_dumps(reference, candidate, load_gate(gate))
    assert loose.stage("frame.unet_output").passed and loose.stage("frame.unet_output").tolerance == {"max_abs": 1e-2}


def test_no_stage_in_common_is_a_user_error(tmp_path):
    clip, rows = synthetic_stages()
    reference = write_dump(tmp_path / "ref", clip, rows, 5, stages="audio.features")
    candidate = write_dump(tmp_path / "cand", clip, rows, 5, stages="frame.output")
    with pytest.raises(ParityError, match="no stage in common"):
        compare_dumps(reference, candidate, load_gate(None))


def test_table_and_lines_render(tmp_path):
    from rich.console import Console

    def edit(clip, rows):
        rows[0]["frame.unet_output"] += np.float32(5e-3)

    comparison = compare_dumps(*_pair(tmp_path, edit), load_gate(None))
    console = Console(width=200, record=True)
    console.print(comparison_table(comparison))
    for line in comparison_lines(comparison):
        console.print(line)
    text = console.export_text()
    assert "frame.unet_output" in text and "FAIL first" in text and "first divergent stage frame.unet_output" in text
    assert "equal" in text and "exceed max |diff|" in text


def test_table_keeps_every_figure_on_an_80_column_console(tmp_path):
    """CI logs are 80 columns wide to rich: the table is printed at its natural width, not cut."""
    from rich.console import Console

    from synctalk_parity.cli.view import print_table

    def edit(clip, rows):
        rows[0]["frame.unet_output"] += np.float32(5e-3)

    comparison = compare_dumps(*_pair(tmp_path, edit), load_gate(None))
    console = Console(width=80, record=True)
    print_table(console, comparison_table(comparison))
    text = console.export_text()
    assert "…" not in text and "ident %" in text and "SSIM/cos" in text and "ident %: identical elements" in text
    assert [line.split()[:3] for line in text.splitlines() if line.strip().startswith("frame.unet_output")] == [["frame.unet_output", "3", "0.005"]]
    assert console.width == 80  # restored


def test_psnr_cell_says_equal_only_when_nothing_differs():
    from synctalk_parity.cli.view import _psnr

    assert _psnr(100.0, 0.0) == "equal"
    assert _psnr(100.0, 3e-6) == ">=100"  # capped, but not identical: the identical % column has the rest
    assert _psnr(48.123, 1.0) == "48.12" and _psnr(None, None) == ""


def test_p99_from_the_histogram_matches_the_exact_one(tmp_path, monkeypatch):
    from synctalk_parity.harness.verdict import metrics

    def edit(clip, rows):
        rng = np.random.default_rng(1)
        for row in rows:
            row["frame.unet_output"] += rng.uniform(0, 1e-3, row["frame.unet_output"].shape).astype(np.float32)
            row["frame.output"][:10] = row["frame.output"][:10] // 2

    reference, candidate = _pair(tmp_path, edit)
    exact = compare_dumps(reference, candidate, load_gate(None))
    monkeypatch.setattr(metrics, "EXACT_P99_ELEMENTS", 10)
    binned = compare_dumps(reference, candidate, load_gate(None))
    assert binned.stage("frame.output").p99 == exact.stage("frame.output").p99 > 0
    assert binned.stage("frame.unet_output").p99 == pytest.approx(exact.stage("frame.unet_output").p99, rel=0.03)


@pytest.mark.parametrize("where", ["middle", "corner", "everywhere"])
def test_ssim_of_frame_is_scikit_images_whole_frame_ssim(where):
    from skimage.metrics import structural_similarity

    from synctalk_parity.harness.verdict.metrics import ssim as ssim_of_frame

    rng = np.random.default_rng(3)
    reference = cv2.GaussianBlur(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8), (5, 5), 0)
    candidate = reference.copy()
    region = {"middle": np.s_[60:100, 90:150], "corner": np.s_[0:12, 230:240], "everywhere": np.s_[:, :]}[where]
    candidate[region] = np.clip(candidate[region].astype(int) + rng.integers(-25, 25, candidate[region].shape), 0, 255)
    expected = structural_similarity(reference, candidate, channel_axis=2, data_range=255)
    assert ssim_of_frame(reference, candidate) == pytest.approx(expected, abs=1e-12)
    assert ssim_of_frame(reference, reference) == 1.0


def test_ssim_does_not_depend_on_frame_order(tmp_path):
    """Every frame's SSIM counts, whatever order they come in; frame.output also reports it over the crop box."""
    clip, rows = synthetic_stages(frames=tuple(range(6)))
    reference = write_dump(tmp_path / "ref", clip, rows, 8)
    changed = [dict(row) for row in rows]
    for row in changed[3:]:  # the last frames differ, the first are identical
        row["frame.output"] = np.clip(row["frame.output"].astype(int) + 20, 0, 255).astype(np.uint8)
    candidate = write_dump(tmp_path / "cand", clip, changed, 8)
    output = compare_dumps(reference, candidate, load_gate(None)).stage("frame.output")
    per_frame = output.per_frame.ssim
    assert per_frame[:3] == [1.0, 1.0, 1.0] and all(s < 1 for s in per_frame[3:])
    assert output.ssim == pytest.approx(np.mean(per_frame))
    assert output.ssim_crop is not None and output.ssim_crop < 1


def test_a_frame_that_cannot_be_read_stops_the_comparison_naming_its_file(tmp_path):
    """Frames are read ahead of the one being measured (on a thread of their own); a damaged file still stops the
    comparison with its own name, and earlier frames' reads do not hide it."""
    reference, candidate = _pair(tmp_path)
    damaged = sorted((candidate / "frame.output").glob("*.png"))[2]
    data = damaged.read_bytes()
    damaged.write_bytes(data[:33] + bytes(len(data) - 45) + data[-12:])  # signature, header and end kept; the image data zeroed
    with pytest.raises(ParityError, match=rf"{damaged.name}: cannot decode the PNG"):
        compare_dumps(reference, candidate, load_gate(None))
