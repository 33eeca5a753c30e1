"""Each test module's seconds from a whole-suite run, written where `make test` reads them to hand the heaviest
modules to the workers first (`tests/conftest.py`, docs/testing.md "The order of the modules").

    make test PYTEST_ARGS="--junitxml=/tmp/suite.xml"      # the whole suite, as CI runs it (empty cache: SYNCTALK_PARITY_CACHE)
    .venv/bin/python scripts/module_seconds.py /tmp/suite.xml --machine "2-core Intel Xeon VM, empty cache"

A test case's time in pytest's JUnit XML is its setup, call and teardown (pytest's default `junit_duration_report`),
so a module's seconds include the fixtures it made, as a worker spends them. Writes `tests/module_seconds.json`
(`--out` for another path): the modules by descending seconds, with the date, the machine and the suite's total.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "module_seconds.json"


def module_of(classname: str, root: Path = ROOT) -> str | None:
    """The test module a JUnit `classname` ("tests.cli.test_quiet" or "tests.cli.test_quiet.TestClass") belongs to, as
    its path from the repository root; None when no prefix of it is a file there."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (root / path).is_file():
            return path
    return None


def module_seconds(junit_files: list[Path], root: Path = ROOT) -> dict[str, float]:
    """Seconds per test module, summed over every test case of the JUnit files, largest first."""
    seconds: dict[str, float] = defaultdict(float)
    for junit in junit_files:
        for case in ET.parse(junit).getroot().iter("testcase"):
            module = module_of(case.get("classname", ""), root)
            if module is not None:
                seconds[module] += float(case.get("time") or 0)
    return dict(sorted(((m, round(s, 1)) for m, s in seconds.items()), key=lambda item: (-item[1], item[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("junit", nargs="+", type=Path, help="JUnit XML of a whole-suite run (pytest --junitxml)")
    parser.add_argument("--machine", required=True, help="the machine and conditions it ran on, for the file's note")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    seconds = module_seconds(args.junit)
    if not seconds:
        raise SystemExit(f"{args.junit[0]}: no test case of a module under {ROOT}: is it pytest's --junitxml of this suite?")
    table = {"measured": f"{datetime.date.today().isoformat()}, {args.machine}, {round(sum(seconds.values()))} s of tests in all",
             "seconds": seconds}
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(table, indent=1) + "\n")
    os.replace(partial, args.out)
    print(f"{args.out}: {len(seconds)} modules, {round(sum(seconds.values()))} s")


if __name__ == "__main__":
    main()
