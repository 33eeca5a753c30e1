"""The layout's promises: imports between the top-level folders point one way, reports read only the verdict's
result types, and the command layer imports nothing heavy until a command runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("models", "reference", "export", "backends", "harness", "reports", "cli")
BASE = "base"  # the package root's own modules: errors, atomic, cache, precision
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
REPORTS_MAY_READ = {("harness", "verdict", "result"), ("harness", "verdict", "types")}
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


def _edges() -> dict[str, dict[str, list[str]]]:
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _package_modules():
        source = _folder(path.relative_to(ROOT).parts)
        for module in _imports(path):
            target = _folder(module)
            if target != source:
                edges[source][target].append(f"{path.relative_to(ROOT)} imports {'.'.join(module)}")
    return edges


def test_folders_import_only_downwards():
    wrong = [where for source, targets in _edges().items() for target, places in targets.items()
             if target not in ALLOWED[source] for where in places]
    assert wrong == [], "imports against the layout's arrows:\n" + "\n".join(wrong)


def test_there_is_no_import_cycle_between_folders():
    graph = {source: set(targets) for source, targets in _edges().items()}
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
