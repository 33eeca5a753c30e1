"""Recovering which template each output frame was built on (`harness/ports/sources.py`), on sanders-mini's real
templates: frames made here by pasting a made-up mouth into the box of the template a port would use."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from synctalk_parity.harness.ports.sources import TemplateRecovery
from synctalk_parity.harness.ports.sources import recover_templates as _recover


@pytest.fixture(scope="module")
def dataset(sanders):
    from synctalk_parity.reference.dataset import open_dataset

    return open_dataset(sanders)


@pytest.fixture(scope="module")
def thumbnails(dataset) -> TemplateRecovery:
    return _recover(dataset, 1)  # the templates' thumbnails, made once


def recover_templates(dataset, count: int, thumbnails: TemplateRecovery) -> TemplateRecovery:
    """A fresh recovery over the module's thumbnails for `count` frames (as `sources.recover_templates` makes it)."""
    return TemplateRecovery(thumbnails.thumbnails, thumbnails.keep, dataset.schedule(count))


def _frame(dataset, template: int, seed: int, quality: int | None = None) -> np.ndarray:
    t = dataset.templates[template]
    image = t.read_image()
    x0, y0, x1, y1 = t.box
    image[y0:y1, x0:x1] = np.random.default_rng(seed).integers(0, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)  # anything in the box
    if quality:
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
    return image


@pytest.mark.parametrize("quality", [None, 90])
def test_the_schedule_and_a_reversed_run_are_recovered(dataset, thumbnails, quality):
    count = 40
    recovery = recover_templates(dataset, count, thumbnails)
    schedule = recovery.schedule
    used = schedule[:20] + schedule[20:][::-1]
    for index in range(count):
        recovery.add(index, _frame(dataset, used[index], index, quality))
    assert recovery.sequence() == tuple(used)
    runs = [(run.first, run.last, run.kind) for run in recovery.runs()]
    assert runs == [(0, 19, "schedule"), (20, 39, "reversed")]
    result = recovery.result()
    assert "20 of 40 frames are built on another template" in result.text and "frames 20-39: templates in reverse order" in result.text


def test_an_offset_and_a_frozen_template_are_told_apart(dataset, thumbnails):
    recovery = recover_templates(dataset, 30, thumbnails)
    schedule = recovery.schedule
    used = [t + 3 for t in schedule[:10]] + [schedule[10]] * 10 + schedule[20:]
    for index in range(30):
        recovery.add(index, _frame(dataset, used[index], index))
    kinds = [(run.first, run.last, run.kind) for run in recovery.runs()]
    assert kinds == [(0, 9, "offset"), (10, 19, "constant"), (20, 29, "schedule")], kinds  # frame 10's template is also the schedule's
    assert "templates +3 from the schedule" in recovery.runs()[0].text


def test_a_faithful_port_departs_from_nothing(dataset, thumbnails):
    recovery = recover_templates(dataset, 12, thumbnails)
    for index in range(12):
        recovery.add(index, _frame(dataset, recovery.schedule[index], index, 75))
    assert recovery.differs == [] and recovery.result().text == "every one of 12 frames is built on the schedule's template"
