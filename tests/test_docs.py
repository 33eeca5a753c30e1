"""The docs a newcomer reads: a short README, and no link or cited source file in README.md or docs/ that leads
nowhere (files move; a stale path is a dead end)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target), ![alt](target)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
SOURCE_PATH = re.compile(r"^(?:[\w.-]+/)+[\w.-]+\.(?:py|sh|toml|template)$")  # a file of this repository, by its path
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def links(text: str) -> list[str]:
    """Relative link targets of a Markdown text (not web addresses), code blocks left out."""
    targets = LINK.findall(FENCE.sub("", text))
    return [target for target in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readme_shows_the_pictures_and_links_the_index():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert {"docs/report.png", "docs/demo-frame.png", "docs/README.md"} <= set(links(readme))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path):
    text = page.read_text(encoding="utf-8")
    dead = []
    for target in links(text):
        path_part, _, anchor = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        missing_heading = anchor and file.suffix == ".md" and file.exists() and anchor not in anchors(file.read_text(encoding="utf-8"))
        if not file.exists() or missing_heading:
            dead.append(target)
    assert dead == [], f"{page.relative_to(ROOT)}: links to nothing: {dead}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_source_file_cited_exists(page: Path):
    cited = [span for span in CODE_SPAN.findall(page.read_text(encoding="utf-8")) if SOURCE_PATH.match(span)]
    assert [path for path in cited if not (ROOT / path).is_file()] == [], page.relative_to(ROOT)


def test_the_checks_catch_what_they_are_for():
    text = "[a](docs/gone.md) [b](https://example.com) ![c](docs/report.png) [d](#x)\n```\n[e](skipped.md)\n```\n"
    assert links(text) == ["docs/gone.md", "docs/report.png", "#x"]
    assert anchors("# Core ML on Linux: `coreml-emulated`\n## parity run\n") == {"core-ml-on-linux-coreml-emulated", "parity-run"}
    assert SOURCE_PATH.match("harness/gates.py") and not (ROOT / "harness/gates.py").is_file()  # moved to harness/verdict/
    assert not SOURCE_PATH.match("frame.unet_output/00003.npy") and not SOURCE_PATH.match("result.json")
    assert len(PAGES) > 10 and all(page.is_file() for page in PAGES)
