"""Judge a candidate folder: find its dump and its reference, compare them, and write result.json.

    comparison, result_path = judge(Path("port-run/"), reference=None, gate=None, precision=None, out=None)

The candidate is a dump folder, or a run folder holding `dump/` and the `result.json` that names
its reference dump. The result is written beside the candidate (or into `out`).

Lip sync (`lip_sync.py`): when both dumps hold `frame.output` for every frame, the candidate's mouth motion is
measured against the reference's, against each frame's template in `dataset` (else the dataset the run folder's
result.json names; without one, the mouth box's own darkness). A run folder whose dump holds only every K-th
frame keeps the lip sync its run measured from every frame it wrote.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ParityError
from .compare import compare_dumps
from .dump import MANIFEST, Dump
from .gates import load_gate
from .result import RESULT_FILE, read_result, write_result
from .types import Backend, Comparison, LipSync


def judge(candidate: Path, reference: Path | None, gate: Path | None, precision: str | None,
          out: Path | None, dataset: Path | None = None, start_frame: int = 0) -> tuple[Comparison, Path]:
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
    if dataset is None and previous is not None and previous.inputs is not None and previous.inputs.dataset:
        dataset = Path(previous.inputs.dataset)
    sync = dump_lip_sync(candidate_dump, reference_dump, dataset, start_frame, previous.lip_sync if previous is not None else None)
    path = write_result(folder, "compare", backend=backend, inputs=previous.inputs if previous else None, comparison=comparison,
                        timing=previous.timing if previous else None, lip_sync=sync)
    return comparison, path


def dump_lip_sync(candidate: Dump, reference: Dump, dataset: Path | None, start_frame: int = 0, measured: LipSync | None = None) -> LipSync:
    """The candidate dump's lip sync against the reference dump's; when the dumps cannot give it (not every frame
    dumped), the lip sync the run `measured` from every frame it wrote, else a lip sync that says why it is missing."""
    from .lip_sync import lip_sync_of_dumps, not_measured

    opened = None
    if dataset is not None and Path(dataset).exists():
        from ...reference.dataset import open_dataset

        opened = open_dataset(dataset, start_frame)
    try:
        return lip_sync_of_dumps(candidate, opened, reference=reference)
    except ParityError as exc:
        return measured if measured is not None else not_measured("reference", str(exc))


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
