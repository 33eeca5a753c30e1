"""Aligning a port's frames with the reference's output frames, on real data: sanders-mini, the reference's
frames 0..3 (golden weights), and for the other frames of the 49-frame clip the scheduled template with a
mouth pasted the reference's way (only the crop box differs between a port's frame and the reference's,
which is what the alignment must see past). Ports are written as real ones are: JPEG through cv2.imwrite,
PNG, mp4 through the project's VideoWriter; numbered from 1 or 0, shifted, short, or with gaps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synctalk_parity.errors import ParityError
from synctalk_parity.harness.ports.align import align, align_frames, align_video, dataset_templates
from synctalk_parity.harness.ports.ingest import read_frame_files, read_video
from synctalk_parity.harness.verdict.png import write_png
from synctalk_parity.reference import frames as F
from synctalk_parity.reference.dataset import template_schedule
from synctalk_parity.reference.video import VideoWriter


def _port_frame(case, template_index: int, mouth: np.ndarray) -> np.ndarray:
    """A port's output frame: the template with `mouth` pasted through the reference's crop and paste."""
    template = case.dataset.templates[template_index]
    image = template.read_image()
    crop = F.crop_328(image, template.box)
    return F.paste(image, F.pasted_region(crop, mouth, template.box), template.box)


def _frames_for(case, schedule: list[int]) -> list[np.ndarray]:
    """Output frames for a template schedule: the reference's own where it has them, else a port-made frame."""
    mouths = [case.frames[i].mouth for i in sorted(case.frames)]
    out = []
    for index, template_index in enumerate(schedule):
        same = index in case.frames and case.frames[index].template_index == template_index
        out.append(case.frames[index].output if same else _port_frame(case, template_index, mouths[index % len(mouths)]))
    return out


@pytest.fixture(scope="module")
def clip(reference_case):
    """(frame count, template callable, the port's frames for reference indices 0..frame_count, one past the end)."""
    count = reference_case.clip.frame_count
    schedule = reference_case.dataset.schedule(count + 1)
    assert schedule[:count] == reference_case.schedule
    return count, dataset_templates(reference_case.dataset, count), _frames_for(reference_case, schedule)


def _write(folder, frames: dict[int, np.ndarray], name: str, quality: int | None = None):
    folder.mkdir(parents=True)
    for number, frame in frames.items():
        path = folder / name.format(n=number)
        if path.suffix == ".png":
            write_png(path, frame)
        else:
            cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, quality or 95])
    return read_frame_files(folder)


@pytest.mark.parametrize(("name", "base", "quality"), [
    ("frame_{n:05d}.jpg", 1, 90),
    ("{n:05d}.png", 0, None),
    ("{n}.jpg", 0, 75),
])
def test_numbering_base_found_for_whole_ports(clip, tmp_path, name, base, quality):
    count, template, frames = clip
    files = _write(tmp_path / "port", {index + base: frames[index] for index in range(count)}, name, quality)
    alignment = align_frames(files, template, count)
    assert (alignment.base, alignment.offset, alignment.missing, alignment.extra) == (base, 0, [], [])
    assert alignment.mapping == {index + base: index for index in range(count)}
    assert alignment.confidence > 0.5 and alignment.score < 1.0
    assert alignment.summary() == f"numbered from {base}, offset 0: {count} of {count} reference frames present"


def test_a_port_one_template_ahead_is_offset_by_one(clip, tmp_path):
    """The port's frame n (from 1) shows reference frame n: it skipped the first template."""
    count, template, frames = clip
    files = _write(tmp_path / "ahead", {n: frames[n] for n in range(1, count + 1)}, "frame_{n:05d}.jpg", 90)
    alignment = align_frames(files, template, count)
    assert (alignment.base, alignment.offset) == (1, 1)
    assert alignment.reference_index(1) == 1 and alignment.reference_index(count) is None
    assert alignment.missing == [0] and alignment.missing_head == (0, 0) and alignment.extra == [count]
    assert alignment.runner_up_offset in (0, 2) and alignment.confidence > 0.5  # a neighbouring template comes next
    summary = alignment.summary()
    assert summary.startswith(f"numbered from 1, offset +1: {count - 1} of {count} reference frames present; missing at the head: 0")
    assert f"1 candidate frame(s) beyond the reference: {count}" in summary


def test_a_port_missing_its_last_two_frames_is_missing_at_the_tail(clip, tmp_path):
    count, template, frames = clip
    files = _write(tmp_path / "short", {index + 1: frames[index] for index in range(count - 2)}, "frame_{n:05d}.jpg", 90)
    alignment = align_frames(files, template, count)
    assert (alignment.base, alignment.offset, alignment.extra) == (1, 0, [])
    assert alignment.missing == [count - 2, count - 1] and alignment.missing_tail == (count - 2, count - 1)
    assert alignment.missing_head is None and alignment.missing_gaps == []
    assert alignment.summary() == f"numbered from 1, offset 0: {count - 2} of {count} reference frames present; missing at the tail: {count - 2}..{count - 1}"


def test_gaps_and_a_missing_head_with_unusual_numbers(clip, tmp_path):
    """Frames 0..2 and 20..22 never written, numbered from 0: the smallest number is 3, still numbered from 0."""
    count, template, frames = clip
    kept = {index: frames[index] for index in range(count) if not (index < 3 or 20 <= index <= 22)}
    alignment = align_frames(_write(tmp_path / "gaps", kept, "{n:05d}.png"), template, count)
    assert (alignment.base, alignment.offset) == (0, 0)
    assert alignment.missing_head == (0, 2) and alignment.missing_gaps == [(20, 22)] and alignment.missing_tail is None
    assert "missing at the head: 0..2; missing in between: 20..22" in alignment.summary()


def test_ping_pong_templates_do_not_fool_the_offset(reference_case, tmp_path):
    """12 templates over 49 frames bounce four times, so many reference indices share a template (a wrong shift
    matches some frames exactly); the right shift is the one that matches all sampled frames."""
    dataset, count = reference_case.dataset, 49
    schedule = template_schedule(count + 2, 12)

    def template(index: int):
        t = dataset.templates[schedule[index]]
        return t.read_image(), t.box

    frames = _frames_for(reference_case, schedule)
    numbers = list(range(1, count + 1))
    for shift in (0, 1, 2):
        port = {n: frames[n - 1 + shift] for n in numbers}
        alignment = align(numbers, port.__getitem__, template, count)
        assert (alignment.base, alignment.offset) == (1, shift), alignment.summary()
        assert alignment.confidence > 0.5
        # the test means something: at some wrong offset tried, a sampled frame is exactly the template it would be
        aliases = [(wrong, n) for wrong in alignment.scores if wrong != shift for n in alignment.samples
                   if 0 <= n - 1 + wrong < count and schedule[n - 1 + wrong] == schedule[n - 1 + shift]]
        assert len(aliases) >= 3


def test_video_ports_align_from_zero(clip, tmp_path):
    count, template, frames = clip
    path = tmp_path / "port.mp4"
    with VideoWriter(path, (1280, 720)) as writer:
        for frame in frames[:count]:
            writer.write(frame)
    alignment = align_video(read_video(path), template, count)
    assert (alignment.base, alignment.offset, alignment.missing, alignment.extra) == (0, 0, [], [])
    assert alignment.confidence > 0.3


def test_frames_of_something_else_are_a_poor_match(clip):
    count, template, frames = clip
    mirrored = {n: cv2.flip(frames[n], 1) for n in range(count)}
    alignment = align(list(mirrored), mirrored, template, count)
    assert "poor match" in alignment.summary() and alignment.score > 12


def test_frames_of_another_size_are_refused_in_one_line(clip):
    count, template, frames = clip
    small = {n: cv2.resize(frames[n], (640, 360)) for n in range(count)}
    with pytest.raises(ParityError) as excinfo:
        align(list(small), small, template, count)
    message = str(excinfo.value)
    assert "\n" not in message and "640x360, the reference's 1280x720" in message
