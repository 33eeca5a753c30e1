"""Each test module's seconds from a whole-suite run, written where `make test` reads them to hand the heaviest
modules to the workers first (`tests/conftest.py`, docs/testing.md "The order of the modules").

    make test PYTEST_ARGS="--junitxml=/tmp/suite.xml"      # the whole suite, as CI runs it (empty cache: SYNCTALK_PARITY_CACHE)
    .venv/bin/python scripts/module_seconds.py /tmp/suite.xml --machine "2-core Intel Xeon VM, empty cache"

A test case's time in pytest's JUnit XML is its setup, call and teardown (pytest's default `junit_duration_report`),
so a module's seconds include the fixtures it made, as a worker spends them. Several files are summed: give the parts
of one whole run, not two runs. Writes `tests/module_seconds.json` (`--out` for another path) all at once: the modules
by descending seconds, with the date, the machine and the suite's total. A run that leaves out a test module of
`tests/` (a subset, `-m`) is refused, since the table would lose that module's seconds; `--partial` writes it anyway.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from synctalk_parity.atomic import write_text_atomically

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


def module_seconds(junit_files: list[Path], root: Path = ROOT) -> tuple[dict[str, float], int]:
    """Seconds per test module, summed over every test case of the JUnit files, largest first; and how many test cases
    belong to no module under `root` (left out). A file that cannot be read or parsed is a `ValueError` naming it."""
    seconds: dict[str, float] = defaultdict(float)
    unplaced = 0
    for junit in junit_files:
        try:
            cases = list(ET.parse(junit).getroot().iter("testcase"))
        except (OSError, ET.ParseError) as exc:
            raise ValueError(f"{junit}: cannot read it as JUnit XML ({exc})") from None
        for case in cases:
            module = module_of(case.get("classname", ""), root)
            if module is None:
                unplaced += 1
            else:
                seconds[module] += float(case.get("time") or 0)
    return dict(sorted(((m, round(s, 1)) for m, s in seconds.items()), key=lambda item: (-item[1], item[0]))), unplaced


def suite_modules(root: Path = ROOT) -> list[str]:
    """Every test module of the suite, as paths from `root`."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").rglob("test_*.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("junit", nargs="+", type=Path, help="JUnit XML of one whole-suite run (pytest --junitxml), or its parts")
    parser.add_argument("--machine", required=True, help="the machine and conditions it ran on, for the file's note")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--partial", action="store_true", help="write the table even if the run left test modules out")
    args = parser.parse_args()
    try:
        seconds, unplaced = module_seconds(args.junit)
    except ValueError as exc:
        sys.exit(f"module_seconds: {exc}")
    if not seconds:
        sys.exit(f"module_seconds: {args.junit[0]}: no test case of a module under {ROOT}: is it pytest's --junitxml of this suite?")
    missing = [m for m in suite_modules() if m not in seconds]
    if missing and not args.partial:
        sys.exit(f"module_seconds: the run left out {len(missing)} test modules ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): "
                 "give the JUnit XML of a whole run (make test), or --partial to write the table without them")
    table = {"measured": f"{datetime.date.today().isoformat()}, {args.machine}, {round(sum(seconds.values()))} s of tests in all",
             "seconds": seconds}
    write_text_atomically(args.out, json.dumps(table, indent=1) + "\n")
    left = f"; {unplaced} test cases of no module under {ROOT} left out" if unplaced else ""
    print(f"{args.out}: {len(seconds)} modules, {round(sum(seconds.values()))} s{left}")


if __name__ == "__main__":
    main()
