"""The matrix file: which avatars, backends, precisions and devices a release is judged on, and how; read, checked
before any work, and expanded into cells.

    spec = load_matrix(Path("release.toml"))
    spec.cells          # every avatar x column, each a CellSpec with its id "demo/onnxruntime-cpu/fp16"

A matrix file (TOML; paths relative to the file; every key is documented in docs/matrix.md)::

    name = "release 2.3"
    frames = 8                      # output frames per cell
    precisions = ["fp32"]           # default precisions of a backend that names none
    require = ["demo/onnxruntime-cpu/fp32"]   # cells that must have run (also --require)
    [speed]                         # model-only frames/s, as `parity bench` measures it
    frames = 8
    repeats = 3
    [gates]                         # a gate file per precision (else the built-in gates)
    fp16 = "gates/fp16.toml"
    [[avatar]]                      # the built-in demo: no dataset
    name = "demo"
    [[avatar]]
    name = "sanders"
    dataset = "data/sanders"
    audio = "data/sanders/talk.wav"
    unet = "checkpoints/unet.pth"
    audio_encoder = "checkpoints/audio_visual_encoder.pth"
    [[backend]]
    backend = "onnxruntime"
    providers = ["cpu", "cuda"]     # one column per provider
    precisions = ["fp32", "fp16"]
    [[backend]]
    backend = "coreml"
    precisions = ["fp16"]
    [[cell]]                        # settings of one cell
    id = "sanders/onnxruntime-cpu/fp16"
    models = "exports/onnx-fp16"    # this export instead of exporting the avatar's checkpoints
    [[allow]]                       # a change since the baseline that is not a regression
    cell = "*/onnxruntime-*/fp16"
    stage = "frame.unet_output"
    reason = "keep-fp32 set changed (reviewed)"

A mistake is one `ParityError` naming the file, the table and the key. Combinations that can run nowhere (torch fp16
on the CPU, a provider for a backend without providers) are mistakes; cells that cannot run *here* are not: they
are reported as "not run" with the reason.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ParityError
from ...precision import PRECISIONS, checked_precision
from .types import Allowance, Bands, Requirement

TOP_KEYS = ("name", "frames", "dump_every", "precisions", "accuracy_repeats", "require", "speed", "gates", "bands", "avatar", "backend",
            "cell", "allow")
AVATAR_KEYS = ("name", "demo", "dataset", "audio", "unet", "audio_encoder", "start_frame")
BACKEND_KEYS = ("backend", "name", "provider", "providers", "device", "devices", "precisions", "cpus", "batch")
CELL_KEYS = ("id", "models", "gate")
ALLOW_KEYS = ("cell", "stage", "metric", "reason")
SPEED_KEYS = ("frames", "repeats")
BAND_KEYS = tuple(Bands.__dataclass_fields__)
BACKEND_NAMES = ("torch", "onnxruntime", "coreml", "coreml-emulated", "tensorrt")
PROVIDERS = ("cpu", "cuda", "tensorrt", "coreml")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
METRICS = ("max_abs", "mean_abs", "p99", "identical", "psnr", "ssim", "cosine", "fps")
DEFAULT_FRAMES = 8
DEFAULT_SPEED_REPEATS = 3
HEAVY_EVERY_FRAME_UP_TO = 16  # default dump_every: heavy stages of every frame up to this many frames, else every 10th (parity run's)


@dataclass(frozen=True)
class AvatarSpec:
    """One avatar: a clip and its checkpoints, or the built-in demo (paths None)."""

    name: str
    dataset: Path | None = None
    audio: Path | None = None
    unet: Path | None = None
    audio_encoder: Path | None = None
    start_frame: int = 0

    @property
    def demo(self) -> bool:
        return self.dataset is None


@dataclass(frozen=True)
class CellSpec:
    """One cell: an avatar on one backend (provider or device) in one precision, with its settings."""

    avatar: AvatarSpec
    label: str  # the column's backend label: "onnxruntime-cpu", "torch-cuda", "coreml-emulated"
    backend: str
    precision: str
    provider: str | None = None
    device: str | None = None
    models: Path | None = None
    gate: Path | None = None
    cpus: float = 1.0
    batch: int | None = None

    @property
    def column(self) -> str:
        return f"{self.label}/{self.precision}"

    @property
    def id(self) -> str:
        return f"{self.avatar.name}/{self.column}"

    @property
    def slug(self) -> str:
        """The cell's folder name: its id with "__" for "/"."""
        return self.id.replace("/", "__")

    @property
    def on_gpu(self) -> bool:
        return (self.backend == "tensorrt" or (self.backend == "torch" and (self.device or "cpu").startswith("cuda"))
                or (self.backend == "onnxruntime" and self.provider in ("cuda", "tensorrt")))

    @property
    def requires(self) -> Requirement:
        """What a worker must have: a GPU (and the `tensorrt` resource) for CUDA and TensorRT, the `macos` resource for
        Core ML prediction, else CPUs."""
        resources = {}
        if self.backend == "tensorrt" or self.provider == "tensorrt":
            resources["tensorrt"] = 1.0
        if self.backend == "coreml" or self.provider == "coreml":
            resources["macos"] = 1.0
        return Requirement(cpus=self.cpus, gpus=1.0 if self.on_gpu else 0.0, resources=resources)


@dataclass(frozen=True)
class SpeedSpec:
    frames: int
    repeats: int


@dataclass
class MatrixSpec:
    """A checked matrix file, expanded into cells (avatars in file order, then columns in file order)."""

    path: Path
    name: str
    frames: int
    dump_every: int
    accuracy_repeats: int
    speed: SpeedSpec
    avatars: list[AvatarSpec]
    cells: list[CellSpec]
    columns: list[str]
    required: list[str] = field(default_factory=list)
    allow: list[Allowance] = field(default_factory=list)
    bands: Bands = field(default_factory=Bands)

    def cell(self, cell_id: str) -> CellSpec | None:
        return next((cell for cell in self.cells if cell.id == cell_id), None)


def load_matrix(path: Path, require: list[str] | tuple[str, ...] = ()) -> MatrixSpec:
    """The matrix file at `path`, checked, with the cells it expands to; `require` adds cell ids that must have run."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParityError(f"{path}: matrix file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ParityError(f"{path}: not a valid TOML matrix file ({exc})") from None
    where = _Where(path)
    where.keys(data, TOP_KEYS, "")
    frames = where.positive(data.get("frames", DEFAULT_FRAMES), "frames")
    dump_every = where.positive(data.get("dump_every", 1 if frames <= HEAVY_EVERY_FRAME_UP_TO else 10), "dump_every")
    accuracy_repeats = where.positive(data.get("accuracy_repeats", 1), "accuracy_repeats")
    speed_table = where.table(data.get("speed", {}), "speed")
    where.keys(speed_table, SPEED_KEYS, "[speed]")
    speed = SpeedSpec(where.positive(speed_table.get("frames", frames), "speed.frames"),
                      where.positive(speed_table.get("repeats", DEFAULT_SPEED_REPEATS), "speed.repeats"))
    default_precisions = where.precisions(data.get("precisions", ["fp32"]), "precisions")
    gates = _gates(where, data.get("gates", {}))
    bands = _bands(where, data.get("bands", {}))
    avatars = [_avatar(where, table, index) for index, table in enumerate(where.array(data, "avatar"), 1)]
    if not avatars:
        raise ParityError(f"{path}: no [[avatar]]: add one (name = \"demo\" for the built-in demo)")
    _unique(where, [a.name for a in avatars], "avatar name")
    columns = [column for index, table in enumerate(where.array(data, "backend"), 1)
               for column in _columns(where, table, index, default_precisions)]
    if not columns:
        raise ParityError(f"{path}: no [[backend]]: add one, e.g. backend = \"onnxruntime\"")
    _unique(where, [f"{c['label']}/{c['precision']}" for c in columns], "column (backend label/precision)")
    cells = [CellSpec(avatar, gate=gates.get(column["precision"]), **column) for avatar in avatars for column in columns]
    cells = _cell_settings(where, data, cells)
    ids = [cell.id for cell in cells]
    required = list(dict.fromkeys([*where.strings(data.get("require", []), "require"), *require]))
    for cell_id in required:
        if cell_id not in ids:
            raise ParityError(f"{path}: required cell {cell_id!r} is not in the matrix{_did_you_mean(cell_id, ids)}")
    allow = [_allowance(where, table, index, ids) for index, table in enumerate(where.array(data, "allow"), 1)]
    return MatrixSpec(path, str(data.get("name") or path.stem), frames, dump_every, accuracy_repeats, speed, avatars, cells,
                      list(dict.fromkeys(cell.column for cell in cells)), required, allow, bands)


def allowance_for(allow: list[Allowance], cell: str, stage: str | None, metric: str | None) -> str | None:
    """The reason of the first allowance covering this cell (glob), stage and metric, else None."""
    for rule in allow:
        if fnmatch.fnmatchcase(cell, rule.cell) and rule.stage in (None, stage) and rule.metric in (None, metric):
            return rule.reason
    return None


# ----- the tables ------------------------------------------------------------------------------------


def _avatar(where: _Where, table: Any, index: int) -> AvatarSpec:
    label = f"[[avatar]] {index}"
    table = where.table(table, label)
    where.keys(table, AVATAR_KEYS, label)
    name = where.name(table.get("name"), f"{label}: name")
    label = f"[[avatar]] {name!r}"
    paths = {key: where.path(table[key], f"{label}: {key}") for key in ("dataset", "audio", "unet", "audio_encoder") if key in table}
    demo = table.get("demo", "dataset" not in paths)
    if not isinstance(demo, bool):
        raise ParityError(f"{where.file}: {label}: demo must be true or false, got {demo!r}")
    if demo and ("dataset" in paths or "audio" in paths):
        raise ParityError(f"{where.file}: {label}: demo = true takes the built-in demo's clip; remove dataset and audio, or demo")
    if not demo and ("dataset" in paths) != ("audio" in paths):
        raise ParityError(f"{where.file}: {label}: give dataset and audio together (or neither, for the built-in demo)")
    if ("unet" in paths) != ("audio_encoder" in paths):
        raise ParityError(f"{where.file}: {label}: give unet and audio_encoder together (or neither, for the demo weights)")
    start = table.get("start_frame", 0)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ParityError(f"{where.file}: {label}: start_frame must be a whole number of at least 0, got {start!r}")
    return AvatarSpec(name, paths.get("dataset"), paths.get("audio"), paths.get("unet"), paths.get("audio_encoder"), start)


def _columns(where: _Where, table: Any, index: int, default_precisions: list[str]) -> list[dict[str, Any]]:
    """The columns one [[backend]] table expands to: one per provider or device and precision."""
    label = f"[[backend]] {index}"
    table = where.table(table, label)
    where.keys(table, BACKEND_KEYS, label)
    backend = table.get("backend")
    if backend not in BACKEND_NAMES:
        raise ParityError(f"{where.file}: {label}: backend {backend!r} is not one of {', '.join(BACKEND_NAMES)}"
                          + (_did_you_mean(str(backend), BACKEND_NAMES) if isinstance(backend, str) else ""))
    label = f"[[backend]] {index} ({backend})"
    providers = _one_or_many(where, table, "provider", "providers", label)
    devices = _one_or_many(where, table, "device", "devices", label)
    if providers and backend != "onnxruntime":
        raise ParityError(f"{where.file}: {label}: providers choose ONNX Runtime's execution provider; {backend} has none")
    if devices and backend != "torch":
        raise ParityError(f"{where.file}: {label}: devices choose the torch device; {backend} takes none")
    for provider in providers:
        if provider not in PROVIDERS:
            raise ParityError(f"{where.file}: {label}: provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    for device in devices:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise ParityError(f"{where.file}: {label}: device {device!r} is not cpu, cuda or cuda:N")
    precisions = where.precisions(table.get("precisions", default_precisions), f"{label}: precisions")
    cpus = table.get("cpus", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
        raise ParityError(f"{where.file}: {label}: cpus must be a positive number, got {cpus!r}")
    batch = None if "batch" not in table else where.positive(table["batch"], f"{label}: batch")
    options: list[tuple[str | None, str | None]]
    if backend == "onnxruntime":
        options = [(provider, None) for provider in (providers or ["cpu"])]
    elif backend == "torch":
        options = [(None, device) for device in (devices or ["cpu"])]
    else:
        options = [(None, None)]
    name = table.get("name")
    if name is not None and len(options) > 1:
        raise ParityError(f"{where.file}: {label}: name labels one column; with several providers or devices leave it out")
    columns = []
    for column_provider, column_device in options:
        suffix = column_provider or column_device
        column_label = where.name(name, f"{label}: name") if name is not None else backend + (f"-{suffix}" if suffix else "")
        for precision in precisions:
            if backend == "torch" and precision == "fp16" and not (column_device or "cpu").startswith("cuda"):
                raise ParityError(f"{where.file}: {label}: torch runs fp16 only on CUDA; use devices = [\"cuda\"] or precision fp32")
            columns.append({"label": column_label, "backend": backend, "precision": precision, "provider": column_provider, "device": column_device,
                            "cpus": float(cpus), "batch": batch})
    return columns


def _cell_settings(where: _Where, data: dict, cells: list[CellSpec]) -> list[CellSpec]:
    """Apply each [[cell]] table (an export folder or a gate file for one cell)."""
    from dataclasses import replace

    by_id = {cell.id: cell for cell in cells}
    seen = set()
    for index, table in enumerate(where.array(data, "cell"), 1):
        label = f"[[cell]] {index}"
        table = where.table(table, label)
        where.keys(table, CELL_KEYS, label)
        cell_id = table.get("id")
        if cell_id not in by_id:
            raise ParityError(f"{where.file}: {label}: id {cell_id!r} is not a cell of this matrix"
                              + (_did_you_mean(cell_id, by_id) if isinstance(cell_id, str) else f"; ids look like {next(iter(by_id))!r}"))
        if cell_id in seen:
            raise ParityError(f"{where.file}: {label}: cell {cell_id!r} has another [[cell]] table; merge them")
        seen.add(cell_id)
        cell = by_id[cell_id]
        changes: dict[str, Any] = {}
        if "gate" in table:
            changes["gate"] = _gate_file(where, table["gate"], f"{label}: gate", cell.precision)
        if "models" in table:
            changes["models"] = _export_folder(where, table["models"], f"{label}: models", cell)
        by_id[cell_id] = replace(cell, **changes)
    return [by_id[cell.id] for cell in cells]


def _export_folder(where: _Where, value: Any, label: str, cell: CellSpec) -> Path:
    from ...export.manifest import find_export, read_manifest

    formats = {"onnxruntime": "onnx", "coreml": "coreml", "coreml-emulated": "coreml", "tensorrt": "tensorrt"}
    if cell.backend not in formats:
        raise ParityError(f"{where.file}: {label}: backend {cell.backend} runs checkpoints, not an export folder")
    path = where.path(value, label)
    try:
        folder, _ = find_export(path, formats[cell.backend])
        manifest = read_manifest(folder)
    except ParityError as exc:
        raise ParityError(f"{where.file}: {label}: {exc}") from None
    if manifest.get("format") != formats[cell.backend]:
        raise ParityError(f"{where.file}: {label}: {folder} holds a {manifest.get('format')} export; {cell.backend} runs {formats[cell.backend]}")
    if manifest.get("precision") != cell.precision:
        raise ParityError(f"{where.file}: {label}: {folder} is a {manifest.get('precision')} export, but the cell is {cell.precision}")
    return folder


def _gates(where: _Where, value: Any) -> dict[str, Path]:
    table = where.table(value, "[gates]")
    where.keys(table, PRECISIONS, "[gates]")
    return {precision: _gate_file(where, file, f"gates.{precision}", precision) for precision, file in table.items()}


def _gate_file(where: _Where, value: Any, label: str, precision: str) -> Path:
    from ..verdict.gates import load_gate

    path = where.path(value, label)
    gate = load_gate(path, precision)  # a mistyped gate file fails now, naming itself
    if gate.precision != precision:
        raise ParityError(f"{where.file}: {label}: {path} says precision {gate.precision!r}, but it gates {precision} cells")
    return path


def _bands(where: _Where, value: Any) -> Bands:
    table = where.table(value, "[bands]")
    where.keys(table, BAND_KEYS, "[bands]")
    for key, number in table.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            raise ParityError(f"{where.file}: bands.{key} must be a non-negative number, got {number!r}")
    return Bands(**{key: float(number) for key, number in table.items()})


def _allowance(where: _Where, table: Any, index: int, ids: list[str]) -> Allowance:
    label = f"[[allow]] {index}"
    table = where.table(table, label)
    where.keys(table, ALLOW_KEYS, label)
    pattern, reason = table.get("cell"), table.get("reason")
    if not isinstance(pattern, str) or not pattern:
        raise ParityError(f"{where.file}: {label}: cell must name a cell id or a glob (\"*/onnxruntime-cpu/fp16\")")
    if not any(fnmatch.fnmatchcase(cell_id, pattern) for cell_id in ids):
        raise ParityError(f"{where.file}: {label}: cell {pattern!r} matches no cell of this matrix{_did_you_mean(pattern, ids)}")
    if not isinstance(reason, str) or not reason.strip():
        raise ParityError(f"{where.file}: {label}: reason is required: say why this change is accepted")
    stage, metric = table.get("stage"), table.get("metric")
    if stage is not None:
        from ...reference.stages import STAGE_NAMES

        if stage not in STAGE_NAMES:
            raise ParityError(f"{where.file}: {label}: unknown stage {stage!r}{_did_you_mean(str(stage), STAGE_NAMES)}")
    if metric is not None and metric not in METRICS:
        raise ParityError(f"{where.file}: {label}: metric {metric!r} is not one of {', '.join(METRICS)}")
    return Allowance(pattern, reason.strip(), stage, metric)


def _one_or_many(where: _Where, table: dict, one: str, many: str, label: str) -> list[str]:
    if one in table and many in table:
        raise ParityError(f"{where.file}: {label}: give {one} or {many}, not both")
    if one in table:
        return where.strings([table[one]], f"{label}: {one}")
    return where.strings(table.get(many, []), f"{label}: {many}")


def _unique(where: _Where, names: list[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ParityError(f"{where.file}: two of the matrix's {what}s are {name!r}; give one a name")
        seen.add(name)


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Where:
    """Checks of one matrix file's values, each failing with a one-line ParityError naming the file and the key."""

    def __init__(self, file: Path):
        self.file = file

    def keys(self, table: dict, known: tuple[str, ...], label: str) -> None:
        for key in table:
            if key not in known:
                where = f"{label}: " if label else ""
                raise ParityError(f"{self.file}: {where}unknown key {key!r}{_did_you_mean(key, known) or '; expected one of ' + ', '.join(known)}")

    def table(self, value: Any, label: str) -> dict:
        if not isinstance(value, dict):
            raise ParityError(f"{self.file}: {label} must be a table")
        return value

    def array(self, data: dict, key: str) -> list:
        value = data.get(key, [])
        if not isinstance(value, list):
            raise ParityError(f"{self.file}: {key} must be an array of tables: [[{key}]]")
        return value

    def positive(self, value: Any, label: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParityError(f"{self.file}: {label} must be a whole number of at least 1, got {value!r}")
        return value

    def strings(self, value: Any, label: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ParityError(f"{self.file}: {label} must be a list of strings")
        return list(value)

    def precisions(self, value: Any, label: str) -> list[str]:
        values = self.strings(value, label)
        if not values:
            raise ParityError(f"{self.file}: {label}: name at least one precision ({', '.join(PRECISIONS)})")
        return [checked_precision(item, f"{self.file}: {label}") for item in dict.fromkeys(values)]

    def name(self, value: Any, label: str) -> str:
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise ParityError(f"{self.file}: {label} must be a name of letters, digits, '.', '_' and '-', got {value!r}")
        return value

    def path(self, value: Any, label: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ParityError(f"{self.file}: {label} must be a path (relative to the matrix file)")
        path = (self.file.parent / value).resolve() if not Path(value).expanduser().is_absolute() else Path(value).expanduser()
        if not path.exists():
            raise ParityError(f"{self.file}: {label}: {value} not found (looked for {path})")
        return path
