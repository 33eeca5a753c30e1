"""The JUnit XML report, for CI systems: one testsuite per run, one testcase per compared stage.

Test case `classname="parity.<backend>"`, `name=<stage>`; a stage outside its tolerance is a `<failure>` with the
comparison's failure text; the run's diagnoses go to the suite's `<system-out>` (and to the stage they name).
A run without a comparison (a benchmark) is one skipped test case, so CI shows it rather than nothing; problems of
the comparison as a whole (frame counts differ) are one failing test case named "comparison".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from ..harness.verdict.types import Diagnosis
from .view import Run, failure_text


def render(runs: list[Run]) -> str:
    """The `<testsuites>` document as UTF-8 XML text."""
    root = ET.Element("testsuites", name="parity")
    suites = [testsuite(run) for run in runs]
    root.extend(suites)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    root.set("time", _seconds(sum(float(suite.get("time", "0")) for suite in suites)))
    for element in root.iter():  # failure texts may carry control characters, which XML 1.0 cannot hold
        element.text = xml_safe(element.text) if element.text else element.text
        for key, value in element.attrib.items():
            element.set(key, xml_safe(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def testsuite(run: Run) -> ET.Element:
    """One run: a testcase per stage, failures with their text, diagnoses as system-out."""
    seconds = run.timing.seconds if run.timing else {}
    suite = ET.Element("testsuite", name=run.label)
    if run.result.created:
        suite.set("timestamp", run.result.created)
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(run):
        ET.SubElement(properties, "property", name=name, value=str(value))
    classname = "parity." + run.label
    if run.comparison is None:
        case = ET.SubElement(suite, "testcase", classname=classname, name="comparison", time="0")
        ET.SubElement(case, "skipped", message=f"parity {run.result.command}: no comparison in this run")
    if run.problems:  # the comparison as a whole failed (frame counts differ, ...): one failing case for it
        case = ET.SubElement(suite, "testcase", classname=classname, name="comparison", time="0.000")
        text = "\n".join(run.problems)
        ET.SubElement(case, "failure", message=_first_line(text), type="ParityGate").text = text
    for stage in run.stages:
        case = ET.SubElement(suite, "testcase", classname=classname, name=stage.stage, time=_seconds(seconds.get(stage.stage, 0.0)))
        if stage.skipped:
            ET.SubElement(case, "skipped", message=f"{stage.stage}: not provided by the candidate (the gate allows it)")
        elif not stage.passed:
            text = failure_text(stage)
            failure = ET.SubElement(case, "failure", message=_first_line(text), type="ParityGate")
            failure.text = text
        notes = [_diagnosis_line(d) for d in run.diagnoses if d.stage == stage.stage]
        if notes:
            ET.SubElement(case, "system-out").text = "\n".join(notes)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(case.find("skipped") is not None for case in cases)))
    suite.set("time", _seconds(sum(float(case.get("time", "0")) for case in cases)))
    if run.diagnoses:
        ET.SubElement(suite, "system-out").text = "\n".join(_diagnosis_line(d) for d in run.diagnoses)
    return suite


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 forbids (control characters other than tab, newline, return)."""
    return _XML_FORBIDDEN.sub("\N{REPLACEMENT CHARACTER}", text)


_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _properties(run: Run) -> list[tuple[str, Any]]:
    found = [("backend", run.backend), ("precision", run.precision), ("verdict", run.verdict), ("run_dir", run.run_dir),
             ("first_divergent_stage", run.first_divergent_stage), ("fps", run.timing.fps if run.timing else None)]
    return [(name, value) for name, value in found if value is not None]


def _diagnosis_line(diagnosis: Diagnosis) -> str:
    return f"diagnosis {diagnosis.name} ({diagnosis.stage or 'all stages'}): {diagnosis.message}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "failed"


def _seconds(value: float) -> str:
    return f"{value:.3f}"
