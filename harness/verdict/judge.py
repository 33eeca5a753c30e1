"""Judge a candidate folder: find its dump and its reference, compare them, and write result.json.

    comparison, result_path = judge(Path("port-run/"), reference=None, gate=None, precision=None, out=None)

The candidate is a dump folder, or a run folder holding `dump/` and the `result.json` that names
its reference dump. The result is written beside the candidate (or into `out`).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ParityError
from .compare import compare_dumps
from .dump import MANIFEST, Dump
from .gates import load_gate
from .result import RESULT_FILE, read_result, write_result
from .types import Backend, Comparison


def judge(candidate: Path, reference: Path | None, gate: Path | None, precision: str | None,
          out: Path | None) -> tuple[Comparison, Path]:
    """Compare the candidate's dump with the reference's and write result.json; returns the comparison and its path."""
    run_dir, dump_dir = locate_candidate(candidate)
    previous = read_result(run_dir / RESULT_FILE) if run_dir else None
    if reference is None:
        named = previous.comparison.reference if previous is not None and previous.comparison is not None else None
        if not named:
            raise ParityError(f"{candidate}: no reference dump named in {RESULT_FILE}; pass --reference DUMP")
        reference = Path(named) if Path(named).is_absolute() else run_dir / named
    candidate_dump = Dump.open(dump_dir)
    reference_dump = Dump.open(reference)
    comparison = compare_dumps(reference_dump, candidate_dump, load_gate(gate, precision or candidate_dump.producer["precision"]))
    folder = Path(out) if out is not None else (run_dir or dump_dir.parent)
    producer = candidate_dump.producer
    backend = (previous.backend if previous is not None else None) or Backend(producer["backend"], producer["precision"], {"producer": producer})
    path = write_result(folder, "compare", backend=backend, inputs=previous.inputs if previous else None, comparison=comparison,
                        timing=previous.timing if previous else None)
    return comparison, path


def locate_candidate(path: Path) -> tuple[Path | None, Path]:
    """(run folder or None, dump folder) for a dump folder or a run folder holding dump/."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        parent = path.parent
        return (parent if (parent / RESULT_FILE).is_file() and path.name == "dump" else None), path
    if (path / "dump" / MANIFEST).is_file():
        return path, path / "dump"
    if not path.exists():
        raise ParityError(f"{path}: not found; pass a dump folder (with {MANIFEST}) or a run folder holding dump/")
    raise ParityError(f"{path}: neither a dump ({MANIFEST}) nor a run folder with dump/{MANIFEST}")
