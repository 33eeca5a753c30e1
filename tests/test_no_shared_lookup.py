"""No hidden test data in the product: nothing outside tests/ looks for the `../shared` folder (golden outputs,
datasets) beside the checkout, so what a command computes never depends on where the clone lies."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = ("tests", "build", "dist", ".venv", ".git")
# a path part "shared" (`"shared"`, `"../shared/golden"`, `"shared/datasets"`) or the tests' golden-folder variable
LOOKUP = re.compile(r"(^|[/\\])shared([/\\]|$)|SYNCTALK_PARITY_GOLDEN")


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in `path` that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_nothing_outside_tests_looks_for_the_shared_folder():
    modules = [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in SKIPPED]
    assert len(modules) > 50  # the package and scripts/ were found
    found = [f"{path.relative_to(ROOT)}:{line}: {text!r}" for path in modules for line, text in _code_strings(path) if LOOKUP.search(text)]
    assert not found, "product code looks for ../shared (move it to tests/golden_files.py):\n" + "\n".join(found)


def test_the_check_sees_a_lookup(tmp_path):
    """The pattern catches the ways the golden folder was found before (models/golden.py)."""
    module = tmp_path / "golden.py"
    module.write_text('"""Docs may say ../shared/golden."""\nfrom pathlib import Path\n'
                      'DEFAULT = Path(__file__).parents[1].parent / "shared" / "golden"\nENV = "SYNCTALK_PARITY_GOLDEN"\n')
    assert sorted(text for _, text in _code_strings(module) if LOOKUP.search(text)) == ["SYNCTALK_PARITY_GOLDEN", "shared"]
