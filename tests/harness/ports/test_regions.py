"""Per-region metrics and lossy-encoding evidence on real frames (sanders-mini, golden weights, the reference's
frames 0..3): a port with a wrong mouth leaves the outside of the crop box exact; a port whose frames went
through JPEG (cv2.imwrite at quality 75, 90, 95) or H.264 differs a little everywhere; a region pasted off
its box or swapped channels are neither."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.ports.ingest import read_frame_files, read_image, read_video
from synctalk_parity.harness.ports.regions import lossy_evidence, mouth_box, region_masks, region_metrics
from synctalk_parity.harness.verdict.png import write_png
from synctalk_parity.reference import frames as F
from synctalk_parity.reference.video import VideoWriter


def _case_frames(case):
    """(reference output frames, crop boxes, template images) of the reference's frames 0..3."""
    indices = sorted(case.frames)
    boxes = [tuple(int(v) for v in case.frames[i].crop_box) for i in indices]
    templates = [case.dataset.templates[case.frames[i].template_index].read_image() for i in indices]
    return [case.frames[i].output for i in indices], boxes, templates


def _wrong_mouth(case, index: int) -> np.ndarray:
    """A port that hands the U-Net's mouth on in RGB order (a classic mistake): pasted the reference's way."""
    stages = case.frames[index]
    template = case.dataset.templates[stages.template_index].read_image()
    region = F.pasted_region(stages.crop_328, stages.mouth[:, :, ::-1], stages.crop_box)
    return F.paste(template, region, stages.crop_box)


def _through(folder, frames, suffix: str, quality: int = 95):
    """Write frames as a port does (frame_00001.jpg ..) and read them back: (images, paths)."""
    folder.mkdir()
    for k, frame in enumerate(frames):
        path = folder / f"frame_{k + 1:05d}{suffix}"
        if suffix == ".png":
            write_png(path, frame)
        else:
            assert cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    files = read_frame_files(folder)
    return [f.load() for f in files], [f.path for f in files]


def test_mouth_box_is_the_unet_square_mapped_back_and_rounded_inward():
    # a 182-pixel box: 4 * 182 / 328 = 2.22 -> 3, 324 * 182 / 328 = 179.8 -> 179
    assert mouth_box((532, 211, 714, 393)) == (535, 214, 711, 390)
    assert mouth_box((0, 0, 328, 328)) == (4, 4, 324, 324)  # the 328 crop itself: exactly its inner 320
    assert mouth_box((10, 20, 174, 184)) == (12, 22, 172, 182)  # half size: 2 .. 162


def test_masks_partition_the_frame_and_the_mouth_is_where_the_unet_writes(reference_case):
    outputs, boxes, templates = _case_frames(reference_case)
    for i, output, box, template in zip(sorted(reference_case.frames), outputs, boxes, templates):
        masks = region_masks(output.shape, box)
        total = masks["mouth"].astype(int) + masks["crop_rest"] + masks["outside"]
        assert (total == 1).all()
        x0, y0, x1, y1 = box
        assert masks["crop_rest"].sum() + masks["mouth"].sum() == (x1 - x0) * (y1 - y0)
        assert not np.any(output != template, axis=-1)[masks["outside"]].any()  # the reference pastes inside the box only
        # another mouth changes the mouth region and, through the bicubic resize back, at most 2 pixels beyond it
        changed = np.any(_wrong_mouth(reference_case, i) != output, axis=-1)
        assert changed[masks["mouth"]].mean() > 0.9
        mx0, my0, mx1, my1 = mouth_box(box)
        near = np.zeros_like(changed)
        near[my0 - 2 : my1 + 2, mx0 - 2 : mx1 + 2] = True
        assert changed[masks["crop_rest"] & ~near].sum() == 0 and changed[masks["crop_rest"] & near].any()
    with pytest.raises(ParityError) as outside:
        region_masks((720, 1280, 3), (1200, 600, 1400, 800))
    assert "\n" not in str(outside.value) and "not inside the 1280x720 frame" in str(outside.value)


def test_wrong_mouth_leaves_the_outside_identical(reference_case, tmp_path):
    outputs, boxes, _ = _case_frames(reference_case)
    wrong = [_wrong_mouth(reference_case, i) for i in sorted(reference_case.frames)]
    candidates, _ = _through(tmp_path / "port", wrong, ".png")
    for reference, candidate, box in zip(outputs, candidates, boxes):
        regions = region_metrics(reference, candidate, box)
        assert regions["outside"] == {"pixels": regions["outside"]["pixels"], "psnr": 100.0, "max_abs": 0.0, "mean_abs": 0.0, "identical": 1.0}
        assert regions["mouth"]["psnr"] < 35 and regions["mouth"]["identical"] < 0.5 and regions["mouth"]["max_abs"] > 50
        assert regions["mouth"]["pixels"] == (lambda b: (b[2] - b[0]) * (b[3] - b[1]))(mouth_box(box))
        assert regions["crop_rest"]["psnr"] > regions["mouth"]["psnr"]
    evidence = lossy_evidence(outputs, candidates, boxes)
    assert not evidence.lossy and evidence.kind is None and evidence.estimated_quality is None
    assert evidence.outside_identical == 1.0 and evidence.outside_psnr == 100.0
    assert evidence.text.startswith("not re-encoded: outside the crop box identical to the reference in all 4 frame(s); the mouth differs")


def test_an_exact_port_is_identical_in_every_region(reference_case, tmp_path):
    outputs, boxes, _ = _case_frames(reference_case)
    candidates, _ = _through(tmp_path / "port", outputs, ".png")
    for reference, candidate, box in zip(outputs, candidates, boxes):
        assert all(r["identical"] == 1.0 and r["psnr"] == 100.0 for r in region_metrics(reference, candidate, box).values())
    evidence = lossy_evidence(outputs, candidates, boxes)
    assert not evidence.lossy and "the mouth is identical too" in evidence.text


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_jpeg_ports_are_lossy_everywhere_with_their_quality(reference_case, tmp_path, quality):
    outputs, boxes, _ = _case_frames(reference_case)
    candidates, paths = _through(tmp_path / "port", outputs, ".jpg", quality)
    regions = region_metrics(outputs[0], candidates[0], boxes[0])
    assert 0 < regions["outside"]["identical"] < 1 and 40 < regions["outside"]["psnr"] < 65
    evidence = lossy_evidence(outputs, candidates, boxes, candidate_paths=paths)
    assert evidence.lossy and evidence.kind == "jpeg"
    assert evidence.header_quality == quality and abs(evidence.estimated_quality - quality) <= 5
    assert abs(evidence.reencoded_quality - quality) <= 5
    assert 40 < evidence.outside_psnr < 65 and evidence.spread > 0.8 and evidence.blockiness > 1.15
    assert evidence.text.startswith(f"lossy everywhere: JPEG (quality {quality} in the files' tables, chroma 4:2:0; re-encoding")
    # without the files (frames decoded elsewhere): JPEG inferred from the block edges, quality from re-encoding alone
    blind = lossy_evidence(outputs, candidates, boxes)
    assert blind.lossy and blind.kind == "jpeg" and blind.header_quality is None and abs(blind.estimated_quality - quality) <= 5
    assert "inferred from 8x8 block edges" in blind.text


def test_a_jpeg_port_with_a_wrong_mouth_is_still_lossy_with_its_quality(reference_case, tmp_path):
    outputs, boxes, _ = _case_frames(reference_case)
    wrong = [_wrong_mouth(reference_case, i) for i in sorted(reference_case.frames)]
    candidates, _ = _through(tmp_path / "port", wrong, ".jpg", 90)
    regions = region_metrics(outputs[1], candidates[1], boxes[1])
    assert regions["mouth"]["psnr"] < 35 and regions["outside"]["psnr"] > 45
    evidence = lossy_evidence(outputs, candidates, boxes)
    assert evidence.lossy and evidence.kind == "jpeg" and abs(evidence.estimated_quality - 90) <= 5


def test_video_ports_are_lossy_video(reference_case, tmp_path):
    outputs, boxes, _ = _case_frames(reference_case)
    with VideoWriter(tmp_path / "port.mp4", (1280, 720)) as writer:
        for frame in outputs:
            writer.write(frame)
    video = read_video(tmp_path / "port.mp4")
    candidates = list(video)
    evidence = lossy_evidence(outputs, candidates, boxes, source="video")
    assert evidence.lossy and evidence.kind == "video" and evidence.estimated_quality is None
    assert 35 < evidence.outside_psnr < 55 and evidence.spread > 0.9
    assert evidence.text.startswith("lossy everywhere: a video codec")
    # not told it is a video: blocky (x264 ultrafast has no deblocking), but no JPEG quality re-makes it
    unknown = lossy_evidence(outputs, candidates, boxes)
    assert unknown.lossy and unknown.kind == "unknown" and unknown.estimated_quality is None


def test_a_region_pasted_off_its_box_or_swapped_channels_are_not_an_encoding(reference_case, tmp_path):
    outputs, boxes, templates = _case_frames(reference_case)
    shifted = []
    for i, template in zip(sorted(reference_case.frames), templates):
        x0, y0, x1, y1 = boxes[i]
        shifted.append(F.paste(template, reference_case.frames[i].pasted_region, (x0 + 24, y0 + 16, x1 + 24, y1 + 16)))
    off_box = lossy_evidence(outputs, shifted, boxes)
    assert not off_box.lossy and off_box.kind is None and off_box.spread < 0.2
    assert off_box.text.startswith("not an encoding: outside the crop box only")
    swapped = lossy_evidence(outputs, [o[:, :, ::-1].copy() for o in outputs], boxes)
    assert not swapped.lossy and swapped.outside_psnr < 30 and "too far for a lossy codec" in swapped.text


def test_frames_of_another_size_are_refused(reference_case, tmp_path):
    outputs, boxes, _ = _case_frames(reference_case)
    small = cv2.resize(outputs[0], (640, 360))
    write_png(tmp_path / "small.png", small)
    with pytest.raises(ParityError) as excinfo:
        region_metrics(outputs[0], read_image(tmp_path / "small.png"), boxes[0])
    assert "\n" not in str(excinfo.value) and "(360, 640, 3)" in str(excinfo.value)
    with pytest.raises(ParityError):
        lossy_evidence(outputs[:2], outputs[:1], boxes[:2])
