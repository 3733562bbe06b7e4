"""docs/ARCHITECTURE.md names every module of gpusweep, and only files that exist.

A newcomer finds the file for a concept there; a module added, moved or removed without the
page following would make it lie, so the page is checked against the tree.
"""

from __future__ import annotations

import re

from conftest import ROOT

PAGE = ROOT / "docs" / "ARCHITECTURE.md"
# The page names files from the repository's root, or inside gpusweep/ or stockpred/.
BASES = (ROOT, ROOT / "gpusweep", ROOT / "stockpred")


def named_files() -> set[str]:
    """Every ``*.py`` path that the page writes in backticks (``records/writer.py``)."""
    return set(re.findall(r"`([\w/]+\.py)`", PAGE.read_text()))


def resolve(name: str) -> str | None:
    for base in BASES:
        path = base / name
        if path.is_file():
            return path.relative_to(ROOT).as_posix()
    return None


def test_every_file_the_page_names_exists():
    missing = sorted(name for name in named_files() if resolve(name) is None)
    assert not missing, f"docs/ARCHITECTURE.md names files that do not exist: {missing}"


def test_the_page_names_every_module_of_gpusweep():
    named = {resolve(name) for name in named_files()}
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "gpusweep").rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py")}
    unnamed = sorted(modules - named)
    assert not unnamed, f"docs/ARCHITECTURE.md does not name: {unnamed}"
