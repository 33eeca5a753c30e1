"""PORTING.md: rendered from its template, every generated part filled in, and every file, module and diagnosis it
cites exists in the package (a port author who follows a reference must find it)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

import synctalk_parity
from synctalk_parity.harness.bundle.build import porting_constants, porting_guide, porting_template
from synctalk_parity.reference import audio, frames
from synctalk_parity.reference.stages import STAGES

PACKAGE = Path(synctalk_parity.__file__).parent
CODE = re.compile(r"`([^`\n]+)`")
SOURCE_FILE = re.compile(r"^[\w./]+\.(py|toml|json|template)$")
MODULE = re.compile(r"^synctalk_parity(\.\w+)+$")
DIAGNOSIS = re.compile(r"^[a-z]+(_[a-z0-9]+)+$")
STORAGE = [  # what golden/ holds, as storage_table reports it for a 4-frame bundle
    {"stage": "audio.features", "frames": None, "of": 4, "stored": "float32 .npy (exact)", "supports": "fp32 and fp16 gates"},
    {"stage": "frame.unet_output", "frames": [0, 3], "of": 4, "stored": "float32 .npy (exact)", "supports": "fp32 and fp16 gates",
     "float16_error": 2.4e-4, "float16_share_of_gate": 2.4},
    {"stage": "frame.output", "frames": [0, 1, 2, 3], "of": 4, "stored": "8-bit PNG (lossless)", "supports": "fp32 and fp16 gates"},
]


def package_references(text: str) -> tuple[list[str], list[str]]:
    """The source files (package-relative paths) and dotted modules a text cites in code spans."""
    spans = CODE.findall(text)
    files = [span for span in spans if SOURCE_FILE.match(span) and "/" in span and span.split("/")[0] not in ("golden", "models")]
    modules = [span for span in spans if MODULE.match(span)]
    return files, modules


def resolves(dotted: str) -> bool:
    """A module, or a name inside the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:  # a parent is a module, not a package: `name` names something inside it
            continue
        target: object = importlib.import_module(name)
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


@pytest.mark.parametrize("which", ["template", "rendered"])
def test_every_file_and_module_cited_exists_in_the_package(which: str):
    text = porting_template().template if which == "template" else porting_guide(STORAGE)
    files, modules = package_references(text)
    assert {"harness/verdict/gates.py", "harness/verdict/dump.py", "harness/verdict/diagnose.py", "reference/frames.py"} <= set(files)
    assert modules, "the template cites the dump schema's function by its dotted name"
    assert [path for path in files if not (PACKAGE / path).is_file()] == []
    assert [name for name in modules if not resolves(name)] == []


def test_the_finders_catch_a_stale_reference():
    stale = "Gates: `harness/gates.py`; dumps: `synctalk_parity.harness.dump.dump_schema`; ok: `harness/verdict/dump.py`."
    files, modules = package_references(stale)
    assert files == ["harness/gates.py", "harness/verdict/dump.py"] and not (PACKAGE / files[0]).is_file()
    assert modules == ["synctalk_parity.harness.dump.dump_schema"] and not resolves(modules[0])
    assert resolves("synctalk_parity.harness.verdict.dump.dump_schema") and not resolves("synctalk_parity.harness.verdict.dump.no_such_name")


def test_every_diagnosis_named_is_one_compare_can_make():
    """Named by the mistake registry's ids, each of which compare makes (tests/harness/verdict/test_mistakes.py)."""
    from synctalk_parity.harness.verdict.mistakes import MISTAKES_BY_ID

    section = porting_guide().split("## Usual mistakes", 1)[1].split("## Proving it", 1)[0]
    named = [span for span in CODE.findall(section) if DIAGNOSIS.match(span)]
    assert len(named) >= 12, named
    assert [name for name in named if name not in MISTAKES_BY_ID] == []


def test_every_generated_part_is_filled_in():
    rendered = porting_guide(STORAGE)
    assert "$" not in rendered and "\n\n\n" not in rendered
    for stage in STAGES:
        assert f"| `{stage.name}` | `{stage.shape}` {stage.dtype} |" in rendered
    assert "| `frame.unet_output` | 0, 3 | float32 .npy (exact) | fp32 and fp16 gates |" in rendered
    assert "| `frame.output` | 0..3 (all 4) | 8-bit PNG (lossless) | fp32 and fp16 gates |" in rendered
    assert "stored float32" in rendered
    without_golden = porting_guide()
    assert "## What `golden/` holds" not in without_golden and "$" not in without_golden and "\n\n\n" not in without_golden


def test_the_constants_quoted_are_the_references():
    constants = porting_constants()
    rendered = porting_guide()
    assert constants["hop_length"] == str(audio.HOP_LENGTH) and f"`T = 1 + S // {audio.HOP_LENGTH}`" in rendered
    assert f"N = int((T - {audio.WINDOW_FRAMES}) / {audio.MEL_FPS} * {audio.VIDEO_FPS}) + 2" in rendered
    assert f"xmin = x[{frames.LEFT_JAW}], xmax = x[{frames.RIGHT_JAW}], ymin = y[{frames.NOSE}]" in rendered
    assert f"crop[{frames.INNER[0]}:{frames.INNER[1]}, {frames.INNER[0]}:{frames.INNER[1]}]" in rendered
    assert f"resized to {frames.CROP_SIZE} x {frames.CROP_SIZE} with OpenCV's bicubic (a = -0.75)" in rendered
    assert "padded feature rows i-8 .. i+7 (zeros outside), reshaped to (32, 16, 16)" in rendered

