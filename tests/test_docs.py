"""The README stays short and every pointer in it and in docs/ leads somewhere that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) and ![alt](target); the target ends at whitespace or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A module path as the docs write it: engine/running/worker.py, optical_tui/commands/batches.py.
MODULE = re.compile(r"(?<![\w/.])((?:engine|optical_tui)/[\w/]*\w\.py)\b")


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"


def test_docs_pages_exist() -> None:
    # Without pages the checks below would pass vacuously.
    assert len(PAGES) > 5


def test_relative_links_resolve() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_module_paths_exist() -> None:
    missing, seen = [], 0
    for page in PAGES:
        for path in MODULE.findall(page.read_text(encoding="utf-8")):
            seen += 1
            if not (ROOT / path).is_file():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert seen > 20, "no module paths found: the pattern no longer matches the docs"
    assert not missing, "paths to missing modules:\n" + "\n".join(missing)
