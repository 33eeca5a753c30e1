"""The mistake registry: one id per mistake, each with a title, a fix in the port's terms and the stage whose
PORTING.md step says how to do it right; diagnoses can be made only of registered mistakes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import synctalk_parity
from synctalk_parity.harness.verdict.mistakes import MISTAKES, MISTAKES_BY_ID, VIDEO, diagnosis, mistake
from synctalk_parity.reference.stages import STAGE_NAMES


def test_every_mistake_has_one_id_a_title_a_fix_and_a_stage():
    assert len(MISTAKES_BY_ID) == len(MISTAKES)
    for m in MISTAKES:
        assert m.id.isidentifier() and m.title and m.fix, m
        assert m.stage in (*STAGE_NAMES, VIDEO), m
        assert "|" not in m.title + m.fix, m  # rendered into PORTING.md's table
        assert not re.search(r"\[[a-z#/@]", m.title + m.fix), m  # printed by rich, which takes [name] for markup
    assert mistake("mask_rectangle_off").porting_section == "What to implement: `frame.unet_input`"


def test_a_diagnosis_names_only_a_registered_mistake():
    found = diagnosis("ghost_audio", "frame.unet_audio", "the U-Net audio input is all zeros")
    assert (found.name, found.stage) == ("ghost_audio", "frame.unet_audio")
    with pytest.raises(KeyError, match="not a registered mistake"):
        diagnosis("audio_ghosted", "frame.unet_audio", "a typo in a detector")


def test_every_registered_mistake_is_one_compare_makes():
    """By a stage signature (diagnose.py), by the port judge (judge.py), or by simulation (a hypothesis of it)."""
    from synctalk_parity.harness.ports.simulate import HYPOTHESES

    package = Path(synctalk_parity.__file__).parent
    sources = (package / "harness" / "verdict" / "diagnose.py").read_text() + (package / "harness" / "ports" / "judge.py").read_text()
    simulated = {h.mistake for h in HYPOTHESES}
    assert [m.id for m in MISTAKES if f'"{m.id}"' not in sources and m.id not in simulated] == []
