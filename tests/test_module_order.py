"""The order the test modules go to the workers: heaviest first, from their measured seconds (`tests/conftest.py`,
`tests/module_seconds.json`, refreshed by `scripts/module_seconds.py`; docs/testing.md)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from .conftest import MODULE_SECONDS, heaviest_modules_first

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("module_seconds_script", ROOT / "scripts" / "module_seconds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_heaviest_modules_go_first_each_whole_and_in_its_own_order():
    items = [SimpleNamespace(nodeid=n) for n in (
        "tests/a.py::test_1", "tests/b.py::test_1", "tests/a.py::test_2", "tests/c.py::test_1",
        "tests/b.py::test_2", "tests/c.py::test_2", "tests/c.py::test_3", "tests/d.py::test_1", "tests/e.py::TestX::test_1")]
    # b measured heaviest; c not measured: 3 tests count 3 s, more than a's 2 s; d and e unmeasured at 1 s: collected order
    ordered = heaviest_modules_first(items, {"tests/a.py": 2.0, "tests/b.py": 50.0})
    assert [i.nodeid for i in ordered] == [
        "tests/b.py::test_1", "tests/b.py::test_2", "tests/c.py::test_1", "tests/c.py::test_2", "tests/c.py::test_3",
        "tests/a.py::test_1", "tests/a.py::test_2", "tests/d.py::test_1", "tests/e.py::TestX::test_1"]


def test_of_the_modules_that_start_at_once_only_one_waits_for_the_demo_weights():
    def module(name, tests, demo):
        return [SimpleNamespace(nodeid=f"tests/{name}.py::test_{i}", fixturenames=["demo_weights_files"] if demo else ["golden"])
                for i in range(tests)]

    a, b, c, d = module("a", 2, True), module("b", 1, True), module("c", 2, False), module("d", 1, True)
    seconds = {"tests/a.py": 90.0, "tests/b.py": 80.0, "tests/c.py": 70.0, "tests/d.py": 60.0}

    def modules(ordered):
        return list(dict.fromkeys(i.nodeid.split("::")[0].removeprefix("tests/").removesuffix(".py") for i in ordered))

    assert modules(heaviest_modules_first([*d, *c, *b, *a], seconds, workers=2)) == ["a", "c", "b", "d"]
    assert modules(heaviest_modules_first([*d, *c, *b, *a], seconds, workers=1)) == ["a", "b", "c", "d"]  # one process: by weight
    # none left that does without them: the order by weight stands
    assert modules(heaviest_modules_first([*d, *b, *a], seconds, workers=2)) == ["a", "b", "d"]
    # three workers: a, then c; b (needs them) gives its slot to nothing, since d needs them too
    assert modules(heaviest_modules_first([*d, *c, *b, *a], seconds, workers=3)) == ["a", "c", "b", "d"]


def test_every_measured_module_is_a_test_module_of_this_suite():
    """A module renamed or removed fails here: the table is refreshed with the suite, not left to drift."""
    seconds = json.loads(MODULE_SECONDS.read_text())["seconds"]
    stray = [m for m in seconds if not ((ROOT / m).is_file() and Path(m).name.startswith("test_") and m.startswith("tests/"))]
    assert not stray, f"{MODULE_SECONDS.name} names modules that are not here: {stray} (scripts/module_seconds.py refreshes it)"
    assert all(s >= 0 for s in seconds.values())


def test_a_collection_puts_the_heaviest_module_first():
    light, heavy = "tests/test_docs.py", "tests/harness/ports/test_audio_ports.py"
    seconds = json.loads(MODULE_SECONDS.read_text())["seconds"]
    assert seconds[heavy] > seconds[light]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", light, heavy],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected and done.returncode == 0, done.stdout + done.stderr
    modules = list(dict.fromkeys(line.split("::")[0] for line in collected))
    assert modules == [heavy, light], modules


def test_the_script_reads_each_modules_seconds_from_pytests_junit_xml(tmp_path):
    junit, out = tmp_path / "suite.xml", tmp_path / "module_seconds.json"
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                          "tests/test_docs.py", "tests/test_atomic.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "module_seconds.py"), str(junit), "--machine", "this test's machine",
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    table = json.loads(out.read_text())
    assert set(table["seconds"]) == {"tests/test_docs.py", "tests/test_atomic.py"}
    assert "this test's machine" in table["measured"] and not list(tmp_path.glob("*.partial"))
    assert _script().module_of("tests.test_docs.TestSomething") == "tests/test_docs.py"
    assert _script().module_of("nowhere.test_x") is None
