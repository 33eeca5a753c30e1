"""Stage dumps: what one pipeline run computed, stage by stage, in a folder any language can write.

A dump is a directory holding `manifest.json` plus `.npy` arrays and PNG images. It is the one
thing the comparison reads, so the reference, every backend and any Go/Swift port are compared
the same way. Writing one needs no Python: `.npy` (NumPy format 1.0: a magic string, a header
dict, raw little-endian data) and PNG are a few dozen lines in any language.

Layout::

    dump/
      manifest.json
      audio.pcm.npy  audio.mel.npy  audio.windows.npy  audio.features.npy     clip stages
      frame.template_index.npy  frame.crop_box.npy  frame.unet_audio.npy      light per-frame
                                                                              stages, stacked
      frame.unet_input/00000.npy  frame.unet_output/00000.npy                 heavy per-frame
      frame.crop_328/00000.png  frame.mouth/00000.png                         stages, one file
      frame.pasted_region/00000.png  frame.output/00000.png                   per frame

`manifest.json`::

    {"schema": "synctalk-parity/dump", "schema_version": 1,
     "producer": {"name": "my-go-port", "version": "0.3.1", "backend": "go-onnx", "precision": "fp32"},
     "frame_count": 249,                       # output frames of the whole run (not only dumped ones)
     "stages": {
       "audio.features": {"per": "clip", "file": "audio.features.npy", "shape": [249, 512], "dtype": "float32"},
       "frame.crop_box": {"per": "frame", "layout": "stacked", "file": "frame.crop_box.npy",
                          "frames": [0, 1, 2], "shape": [3, 4], "dtype": "int64"},
       "frame.output": {"per": "frame", "layout": "files", "pattern": "frame.output/{index:05d}.png",
                        "frames": [0, 1, 2], "shape": [720, 1280, 3], "dtype": "uint8"}}}

Rules (checked when a dump is opened; `dump_schema()` is the JSON Schema of the manifest):
- stage names are those of the stage contract (`reference/stages.py`); any subset may be present;
- clip stages: one `.npy` whose shape and dtype are the manifest's;
- stacked per-frame stages (`frame.template_index`, `frame.crop_box`, `frame.unet_audio`): one
  `.npy` whose row r is frame `frames[r]`; its shape is `[len(frames), ...]`;
- file-per-frame stages: `pattern` with `{index:05d}` names one file per frame in `frames`; the
  uint8 images (`frame.crop_328`, `frame.mouth`, `frame.pasted_region`, `frame.output`) are 8-bit
  3-channel PNG holding BGR as OpenCV writes it (i.e. a normal RGB PNG of the picture), float
  tensors are `.npy`; `shape` is the per-frame shape, `null` for a dimension that differs between
  frames (the pasted region's size follows each crop box);
- dtypes are NumPy names (`float32`, `float64`, `int64`, `uint8`, ...);
- every `file` and every frame's file from `pattern` lies inside the dump's folder: relative, no `..`,
  and not through a symlink leading out (a symlink to another file of the dump is fine).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import struct
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ...errors import ParityError
from ...precision import PRECISIONS
from ...reference.stages import CLIP_STAGES, FRAME_STAGES, STAGE_NAMES
from .png import write_png
from .validate import validate

SCHEMA = "synctalk-parity/dump"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LIGHT_STAGES = frozenset({"frame.template_index", "frame.crop_box", "frame.unet_audio"})
HEAVY_STAGES = frozenset(FRAME_STAGES) - LIGHT_STAGES
IMAGE_STAGES = frozenset({"frame.crop_328", "frame.mouth", "frame.pasted_region", "frame.output"})
PRODUCER_KEYS = ("name", "version", "backend", "precision")


def parse_stage_selection(text: str) -> frozenset[str]:
    """`"all"`, `"none"` or comma-separated stage names (`"audio.features,frame.output"`)."""
    text = text.strip()
    if text == "all":
        return frozenset(STAGE_NAMES)
    if text in ("none", ""):
        return frozenset()
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        _check_stage_name(name, "--dump")
    return frozenset(names)


class DumpWriter:
    """Writes a dump: clip stages once, frames one at a time; `close()` writes the manifest.

    Files go to `<path>.partial` and the folder is renamed to `path` on close, so a dump that
    exists is complete. Heavy stages are written as frames arrive (memory stays flat); light
    stages are kept and stacked on close.
    """

    def __init__(self, path: str | os.PathLike, producer: dict, frame_count: int, stages: Iterable[str] | str = "all"):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.producer = _checked_producer(producer)
        self.frame_count = int(frame_count)
        self.selected = parse_stage_selection(stages) if isinstance(stages, str) else frozenset(stages)
        for name in self.selected:
            _check_stage_name(name, "stage selection")
        self._entries: dict[str, dict] = {}
        self._light: dict[str, dict[int, np.ndarray]] = {}
        self._heavy_frames: dict[str, list[int]] = {}
        self._heavy_shapes: dict[str, list] = {}
        self._closed = False
        _check_replaceable(self.path)
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)

    def add_clip(self, stages: dict[str, np.ndarray]) -> None:
        """Store the selected clip stages (`audio.*`)."""
        for name, value in stages.items():
            _check_stage_name(name, "add_clip")
            if name not in CLIP_STAGES:
                raise ParityError(f"{name} is a per-frame stage; pass it to add_frame")
            if name not in self.selected:
                continue
            array = np.asarray(value)
            file = f"{name}.npy"
            np.save(self.partial / file, array, allow_pickle=False)
            self._entries[name] = {"per": "clip", "file": file, "shape": list(array.shape), "dtype": array.dtype.name}

    def add_frame(self, index: int, stages: dict[str, np.ndarray], heavy: bool = True) -> None:
        """Store the selected stages of output frame `index`; heavy stages only when `heavy`."""
        index = int(index)
        for name, value in stages.items():
            _check_stage_name(name, "add_frame")
            if name not in FRAME_STAGES:
                raise ParityError(f"{name} is a clip stage; pass it to add_clip")
            if name not in self.selected or (name in HEAVY_STAGES and not heavy):
                continue
            array = np.asarray(value)
            if name in LIGHT_STAGES:
                frames = self._light.setdefault(name, {})
                if index in frames:
                    raise ParityError(f"{self.path}: frame {index} of {name} added twice")
                frames[index] = array
            else:
                self._write_heavy(name, index, array)

    def close(self) -> Path:
        """Stack the light stages, write `manifest.json`, and move the dump into place."""
        if self._closed:
            return self.path
        for name, frames in self._light.items():
            order = sorted(frames)
            stacked = np.stack([frames[i] for i in order])
            file = f"{name}.npy"
            np.save(self.partial / file, stacked, allow_pickle=False)
            self._entries[name] = {
                "per": "frame", "layout": "stacked", "file": file, "frames": order,
                "shape": list(stacked.shape), "dtype": stacked.dtype.name,
            }
        for name, indices in self._heavy_frames.items():
            self._entries[name]["frames"] = sorted(indices)
            self._entries[name]["shape"] = self._heavy_shapes[name]
        manifest = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "producer": self.producer,
            "frame_count": self.frame_count,
            "stages": {name: self._entries[name] for name in STAGE_NAMES if name in self._entries},
        }
        (self.partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if self.path.exists():
            _check_replaceable(self.path)
            shutil.rmtree(self.path)
        self.partial.rename(self.path)
        self._closed = True
        return self.path

    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self.partial.exists():
            shutil.rmtree(self.partial, ignore_errors=True)

    def add_frame_file(self, name: str, index: int, source: Path, shape: tuple[int, ...], dtype: str) -> None:
        """Store a heavy stage of frame `index` from a file already written in the dump's format (a PNG of an image
        stage, else a `.npy`) of that `shape` and `dtype`: hard-linked where the file system allows, else copied."""
        _check_stage_name(name, "add_frame_file")
        if name not in HEAVY_STAGES:
            raise ParityError(f"{name}: only heavy per-frame stages are stored one file per frame")
        if name not in self.selected:
            return
        target = self._record_heavy(name, int(index), tuple(shape), dtype)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)

    def _write_heavy(self, name: str, index: int, array: np.ndarray) -> None:
        if name in IMAGE_STAGES and (array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3):
            raise ParityError(f"{name}: frame {index} must be (h, w, 3) uint8 to store as PNG, got {array.shape} {array.dtype}")
        target = self._record_heavy(name, index, array.shape, array.dtype.name)
        if name in IMAGE_STAGES:
            write_png(target, array)
        else:
            np.save(target, array, allow_pickle=False)

    def _record_heavy(self, name: str, index: int, shape: tuple[int, ...], dtype: str) -> Path:
        """Record frame `index` of heavy stage `name` in the manifest; returns the file to write."""
        pattern = f"{name}/{{index:05d}}.{'png' if name in IMAGE_STAGES else 'npy'}"
        frames = self._heavy_frames.setdefault(name, [])
        if index in frames:
            raise ParityError(f"{self.path}: frame {index} of {name} added twice")
        if name not in self._entries:
            (self.partial / name).mkdir()
            self._entries[name] = {"per": "frame", "layout": "files", "pattern": pattern, "dtype": dtype}
            self._heavy_shapes[name] = list(shape)
        elif self._entries[name]["dtype"] != dtype:
            raise ParityError(f"{name}: frame {index} is {dtype}, earlier frames {self._entries[name]['dtype']}")
        self._heavy_shapes[name] = _merged_shape(self._heavy_shapes[name], shape, name, index)
        frames.append(index)
        return self.partial / pattern.format(index=index)


class Dump:
    """An opened, validated dump. `Dump.open(path)`; then `.clip(stage)`, `.frame(stage, index)`."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self._stacked: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | os.PathLike) -> Dump:
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            hint = " (a run folder? its dump is in dump/)" if (path / "dump" / MANIFEST).is_file() else ""
            raise ParityError(f"{manifest_path}: not found; a dump folder holds manifest.json{hint}")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParityError(f"{manifest_path}: not valid JSON ({exc})") from None
        _validate_manifest(manifest, manifest_path)
        dump = cls(path, manifest)
        for name in dump.stage_names:
            dump._validate_files(name)
        return dump

    @property
    def stage_names(self) -> list[str]:
        """The stages present, in contract order."""
        return [name for name in STAGE_NAMES if name in self.manifest["stages"]]

    @property
    def frame_count(self) -> int:
        return int(self.manifest["frame_count"])

    @property
    def producer(self) -> dict:
        return self.manifest["producer"]

    def entry(self, stage: str) -> dict:
        if stage not in self.manifest["stages"]:
            raise ParityError(f"{self.path}: stage {stage} is not in this dump (it has {', '.join(self.stage_names) or 'none'})")
        return self.manifest["stages"][stage]

    def frames(self, stage: str) -> list[int]:
        """Indices of the output frames dumped for a per-frame stage."""
        entry = self.entry(stage)
        if entry["per"] != "frame":
            raise ParityError(f"{self.path}: {stage} is a clip stage; read it with clip()")
        return list(entry["frames"])

    def clip(self, stage: str) -> np.ndarray:
        entry = self.entry(stage)
        if entry["per"] != "clip":
            raise ParityError(f"{self.path}: {stage} is a per-frame stage; read it with frame()")
        return self._load_npy(self.path / entry["file"], entry, stage)

    def frame(self, stage: str, index: int) -> np.ndarray:
        """Frame `index` of a per-frame stage (a PNG comes back as BGR uint8, as cv2 reads it)."""
        entry = self.entry(stage)
        frames = self.frames(stage)
        if index not in frames:
            raise ParityError(f"{self.path}: frame {index} of {stage} is not in the dump (it has {_span(frames)})")
        if entry["layout"] == "stacked":
            if stage not in self._stacked:
                self._stacked[stage] = self._load_npy(self.path / entry["file"], entry, stage)
            return self._stacked[stage][frames.index(index)]
        return self._load_frame_file(stage, entry, index)

    def frame_path(self, stage: str, index: int) -> Path:
        """The file holding frame `index` of a file-per-frame stage."""
        return self.path / self.entry(stage)["pattern"].format(index=index)

    def _load_frame_file(self, stage: str, entry: dict, index: int) -> np.ndarray:
        file = self.frame_path(stage, index)
        if file.suffix == ".png":
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise ParityError(f"{file}: cannot decode the PNG")
            if image.ndim == 2:
                image = image[:, :, None]
            _check_shape(image.shape, image.dtype, entry["shape"], entry["dtype"], file)
            return image
        return self._load_npy(file, {**entry, "shape": entry["shape"]}, stage)

    def _load_npy(self, file: Path, entry: dict, stage: str) -> np.ndarray:
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ParityError(f"{file}: cannot read the .npy of {stage} ({exc})") from None
        _check_shape(array.shape, array.dtype, entry["shape"], entry["dtype"], file)
        return array

    def _validate_files(self, stage: str) -> None:
        entry = self.manifest["stages"][stage]
        if entry["per"] == "frame":
            outside = [i for i in entry["frames"] if i >= self.frame_count]
            if outside:
                raise ParityError(f"{self.path / MANIFEST}: {stage} lists frame {outside[0]}, outside the run's {self.frame_count} frames "
                                  f"(0..{self.frame_count - 1}); frame indices count from 0 in output order")
        if "file" in entry:
            file = self._inside(entry["file"], stage, "file")
            if not file.is_file():
                raise ParityError(f"{file}: missing; manifest.json lists it for {stage}")
            shape, dtype = _npy_header(file)
            _check_shape(shape, dtype, entry["shape"], entry["dtype"], file)
            _check_complete(file, shape, dtype)
            if entry["per"] == "frame" and shape[0] != len(entry["frames"]):
                raise ParityError(f"{file}: {shape[0]} rows but manifest.json lists {len(entry['frames'])} frames for {stage}")
            return
        for index in entry["frames"]:
            file = self._inside(entry["pattern"].format(index=index), stage, "pattern")
            if not file.is_file():
                raise ParityError(f"{file}: missing; manifest.json lists frame {index} of {stage}")
            shape, dtype = _png_header(file) if file.suffix == ".png" else _npy_header(file)
            _check_shape(shape, dtype, entry["shape"], entry["dtype"], file)
            _check_complete(file, shape, dtype)


    def _inside(self, relative: str, stage: str, key: str) -> Path:
        """`self.path / relative`, refused when it leads outside the dump: absolute, through `..`, or a symlink out."""
        file = self.path / relative
        root = self.path.resolve()
        if Path(relative).is_absolute() or ".." in Path(relative).parts or not file.resolve().is_relative_to(root):
            raise ParityError(f"{self.path / MANIFEST}: stage {stage}'s {key} {relative!r} leads outside the dump ({root}); "
                              "a dump reads only files inside its own folder")
        return file


def dump_schema() -> dict:
    """The JSON Schema (draft 2020-12) of `manifest.json` (shipped as dump.schema.json)."""
    dims = {"type": "array", "items": {"type": ["integer", "null"], "minimum": 0}}
    frames = {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True}
    clip = {
        "type": "object",
        "required": ["per", "file", "shape", "dtype"],
        "properties": {"per": {"const": "clip"}, "file": {"type": "string"}, "shape": dims, "dtype": {"type": "string"}},
    }
    stacked = {
        "type": "object",
        "required": ["per", "layout", "file", "frames", "shape", "dtype"],
        "properties": {
            "per": {"const": "frame"}, "layout": {"const": "stacked"}, "file": {"type": "string"},
            "frames": frames, "shape": dims, "dtype": {"type": "string"},
        },
    }
    files = {
        "type": "object",
        "required": ["per", "layout", "pattern", "frames", "shape", "dtype"],
        "properties": {
            "per": {"const": "frame"}, "layout": {"const": "files"},
            "pattern": {"type": "string", "pattern": "\\{index:05d\\}\\.(npy|png)$"},
            "frames": frames, "shape": dims, "dtype": {"type": "string"},
        },
    }
    stage_schema = dict.fromkeys(CLIP_STAGES, clip)
    stage_schema.update(dict.fromkeys(LIGHT_STAGES, stacked))
    stage_schema.update(dict.fromkeys(HEAVY_STAGES, files))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://synctalk-parity/dump.schema.json",
        "title": "synctalk-parity stage dump manifest",
        "type": "object",
        "required": ["schema", "schema_version", "producer", "frame_count", "stages"],
        "properties": {
            "schema": {"const": SCHEMA},
            "schema_version": {"const": SCHEMA_VERSION},
            "producer": {
                "type": "object",
                "required": list(PRODUCER_KEYS),
                "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"}, "backend": {"type": "string"},
                    "precision": {"enum": list(PRECISIONS)},
                },
            },
            "frame_count": {"type": "integer", "minimum": 0},
            "stages": {
                "type": "object",
                "properties": {name: stage_schema[name] for name in STAGE_NAMES},
                "additionalProperties": False,
            },
        },
    }


def _validate_manifest(manifest, path: Path) -> None:
    """The schema and version first (their own messages), stage names with a "did you mean", then `dump_schema()`
    with jsonschema, then what a schema cannot say (dtype names, PNG stages are uint8)."""
    if not isinstance(manifest, dict):
        raise ParityError(f"{path}: expected a JSON object")
    if manifest.get("schema") != SCHEMA:
        raise ParityError(f"{path}: 'schema' is {manifest.get('schema')!r}, expected {SCHEMA!r}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ParityError(f"{path}: schema_version {manifest.get('schema_version')!r} is not supported (this toolkit reads {SCHEMA_VERSION})")
    stages = manifest.get("stages")
    for name in stages if isinstance(stages, dict) else ():
        _check_stage_name(name, str(path))
    validate(manifest, dump_schema(), path)
    assert isinstance(stages, dict)  # the schema says so
    for name, entry in stages.items():
        where = f"{path}: stage {name}"
        try:
            dtype = np.dtype(entry["dtype"])
        except TypeError:
            raise ParityError(f"{where}: unknown dtype {entry['dtype']!r} (use NumPy names: float32, int64, uint8)") from None
        if entry.get("pattern", "").endswith(".png") and dtype != np.uint8:
            raise ParityError(f"{where}: PNG frames must be uint8, manifest says {entry['dtype']}")


def _check_stage_name(name: str, where: str) -> None:
    if name not in STAGE_NAMES:
        close = difflib.get_close_matches(name, STAGE_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; stages are {', '.join(STAGE_NAMES)}"
        raise ParityError(f"{where}: unknown stage {name!r}{hint}")


def _check_shape(shape, dtype, expected_shape: list, expected_dtype: str, file: Path) -> None:
    shape = tuple(shape)
    if len(shape) != len(expected_shape) or any(e is not None and e != s for s, e in zip(shape, expected_shape)):
        raise ParityError(f"{file}: shape {list(shape)} does not match manifest.json's {expected_shape}")
    if np.dtype(dtype) != np.dtype(expected_dtype):
        raise ParityError(f"{file}: dtype {np.dtype(dtype).name} does not match manifest.json's {expected_dtype}")


def _npy_header(file: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except (OSError, ValueError) as exc:
        raise ParityError(f"{file}: not a .npy file ({exc})") from None
    return shape, dtype


def _check_complete(file: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """A file cut short (a crashed writer, a partial copy) is refused when the dump is opened, not half-read later."""
    size = file.stat().st_size
    if file.suffix == ".png":
        with open(file, "rb") as handle:
            handle.seek(max(0, size - 12))
            if handle.read(12)[4:8] != b"IEND":
                raise ParityError(f"{file}: truncated PNG (no IEND chunk at its end); write it again")
        return
    with open(file, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(handle)
        expected = handle.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if size < expected:
        raise ParityError(f"{file}: truncated .npy ({size:,} bytes, its header needs {expected:,}); write it again")


def _png_header(file: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the PNG's IHDR chunk, without decoding the image."""
    with open(file, "rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ParityError(f"{file}: not a PNG file")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None:
        raise ParityError(f"{file}: PNG must be 8-bit RGB (colour type 2), got bit depth {depth}, colour type {colour}")
    return (height, width, channels), np.dtype(np.uint8)


def _check_replaceable(path: Path) -> None:
    """A dump may replace an earlier dump or an empty folder, never other files."""
    if path.exists() and not (path / MANIFEST).is_file() and (not path.is_dir() or any(path.iterdir())):
        raise ParityError(f"{path}: exists and is not a dump; choose another output folder")


def _merged_shape(known: list, shape: tuple, name: str, index: int) -> list:
    if len(known) != len(shape):
        raise ParityError(f"{name}: frame {index} has shape {list(shape)}, earlier frames {known}")
    return [k if k == s else None for k, s in zip(known, shape)]


def _checked_producer(producer: dict) -> dict:
    missing = [key for key in PRODUCER_KEYS if not isinstance(producer.get(key), str)]
    if missing:
        raise ParityError(f"dump producer needs string fields {', '.join(missing)}")
    if producer["precision"] not in PRECISIONS:
        raise ParityError(f"dump producer precision {producer['precision']!r} is not one of {', '.join(PRECISIONS)}")
    return dict(producer)


def _span(frames: list[int]) -> str:
    if not frames:
        return "no frames"
    shown = ", ".join(map(str, frames[:8]))
    return f"frames {shown}{', ...' if len(frames) > 8 else ''}"
