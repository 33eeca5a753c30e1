"""The layout's promises: imports between the top-level folders point one way, so do imports between the rooms of
`harness/`, reports read only the verdict's result types, no room outgrows its share of the package, and the
command layer imports nothing heavy until a command runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("models", "reference", "export", "backends", "harness", "reports", "cli")
BASE = "base"  # the package root's own modules: errors, atomic, cache, precision, allocator
# what each folder may import (lazy imports inside functions count too: they are dependencies all the same)
ALLOWED = {
    BASE: set(),
    "models": {BASE},
    "reference": {BASE, "models"},
    "export": {BASE, "models"},
    "backends": {BASE, "models", "export"},
    "harness": {BASE, "models", "reference", "export", "backends"},
    "reports": {BASE, "harness"},
    "cli": {BASE, *FOLDERS} - {"cli"},
}
REPORTS_MAY_READ = {("harness", "verdict", "result"), ("harness", "verdict", "types"), ("harness", "locate", "types"),
                    ("harness", "matrix", "types")}
# the rooms of harness/ and what each may import: every room builds on the verdict and the production pipeline,
# never on another room's insides; `harness/`'s own modules (ROOM_BASE) tie the rooms together and import none
ROOM_BASE = "harness"
ROOMS_ALLOWED = {
    ROOM_BASE: set(),
    "verdict": {ROOM_BASE},
    "pipeline": {ROOM_BASE, "verdict"},
    "ports": {ROOM_BASE, "verdict", "pipeline"},
    "bench": {ROOM_BASE, "verdict", "pipeline", "ports"},
    "bundle": {ROOM_BASE, "verdict", "pipeline"},
    "locate": {ROOM_BASE, "verdict", "pipeline"},
    "matrix": {ROOM_BASE, "verdict", "pipeline", "bench"},  # bench: its model-only measurement (`model_rows`)
}
ROOMS = tuple(room for room in ROOMS_ALLOWED if room != ROOM_BASE)
LARGEST_ROOM_SHARE = 0.20  # no folder's own modules hold more than this share of the package's lines
HARNESS_OWN_SHARE = 0.05  # harness/'s own modules: only what ties its rooms together
HEAVY = ("torch", "onnx", "onnxruntime", "coremltools", "cv2", "skimage", "librosa", "scipy", "numpy")


def _package_modules() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in ("tests", "scripts", "build", ".venv")]


def _imports(path: Path) -> list[tuple[str, ...]]:
    """Every package-internal module path imported by `path` (relative imports), as tuples of names."""
    parts = path.relative_to(ROOT).parts
    package = list(parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                found.append((*base, *node.module.split(".")))
            else:
                found.extend((*base, alias.name) for alias in node.names)
    return found


def _folder(module: tuple[str, ...]) -> str:
    return module[0] if module and module[0] in FOLDERS else BASE


def _room(module: tuple[str, ...]) -> str | None:
    """The harness room a module belongs to (`harness` for harness/'s own modules), None outside harness/."""
    if not module or module[0] != "harness":
        return None
    return module[1] if len(module) > 2 and module[1] in ROOMS else ROOM_BASE


def _edges(classify=_folder) -> dict[str, dict[str, list[str]]]:
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _package_modules():
        source = classify(path.relative_to(ROOT).parts)
        for module in _imports(path):
            target = classify(module)
            if source is not None and target is not None and target != source:
                edges[source][target].append(f"{path.relative_to(ROOT)} imports {'.'.join(module)}")
    return edges


def test_folders_import_only_downwards():
    wrong = [where for source, targets in _edges().items() for target, places in targets.items()
             if target not in ALLOWED[source] for where in places]
    assert wrong == [], "imports against the layout's arrows:\n" + "\n".join(wrong)


def test_harness_rooms_import_only_downwards():
    wrong = [where for source, targets in _edges(_room).items() for target, places in targets.items()
             if target not in ROOMS_ALLOWED[source] for where in places]
    assert wrong == [], "imports against the arrows between harness/ rooms:\n" + "\n".join(wrong)


def test_every_harness_folder_is_a_known_room():
    folders = {p.name for p in (ROOT / "harness").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(ROOMS), f"rooms on disk {sorted(folders)} against ROOMS_ALLOWED {sorted(ROOMS)}"


def _own_lines(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.glob("*.py"))


def test_no_room_outgrows_its_share_of_the_package():
    total = sum(len(p.read_text().splitlines()) for p in _package_modules())
    folders = {p.parent for p in _package_modules()}
    shares = {str(f.relative_to(ROOT)) or ".": _own_lines(f) / total for f in folders}
    too_big = {name: f"{share:.0%}" for name, share in shares.items() if share > LARGEST_ROOM_SHARE}
    assert too_big == {}, f"folders over {LARGEST_ROOM_SHARE:.0%} of the package's {total} lines: {too_big}"
    assert shares["harness"] <= HARNESS_OWN_SHARE, f"harness/'s own modules hold {shares['harness']:.0%} (at most {HARNESS_OWN_SHARE:.0%})"


@pytest.mark.parametrize("classify", [_folder, _room], ids=["folders", "harness rooms"])
def test_there_is_no_import_cycle(classify):
    graph = {source: set(targets) for source, targets in _edges(classify).items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join([*trail, node])}"
        state[node] = "open"
        for target in graph.get(node, ()):
            visit(target, [*trail, node])
        state[node] = "done"

    for node in graph:
        visit(node, [])


def test_reports_read_only_the_result_types():
    wrong = []
    for path in (ROOT / "reports").rglob("*.py"):
        for module in _imports(path):
            if module[0] == "harness" and module not in REPORTS_MAY_READ:
                wrong.append(f"{path.relative_to(ROOT)} imports {'.'.join(module)}")
    assert wrong == []


def test_the_checker_sees_real_imports():
    """The checks above would pass vacuously if the import scan found nothing."""
    edges = _edges()
    assert "export" in edges["backends"] and "harness" in edges["cli"] and "harness" in edges["reports"]
    rooms = _edges(_room)
    assert "verdict" in rooms["pipeline"] and "pipeline" in rooms["ports"] and "ports" in rooms["bench"]


@pytest.mark.parametrize("command", [None, "run", "compare", "export", "doctor", "bench", "report", "bundle", "cache"])
def test_help_imports_nothing_heavy(command):
    """`parity [COMMAND] --help` loads the command layer without torch, onnx, OpenCV or numpy."""
    args = ["--help"] if command is None else [command, "--help"]
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from synctalk_parity.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at --help: {done.stdout.strip()}"
