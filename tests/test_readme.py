"""README.md, checked against the tree: its module map names every module, and every heading
is its own block (a heading glued to the paragraph above it is easy to miss in an edit)."""

from __future__ import annotations

import re

from conftest import ROOT

README = ROOT / "README.md"


def test_the_module_map_names_every_module_in_its_folders_row():
    """The table "where | what" has one row per folder of gpusweep/, naming its modules in
    backticks (``preflight``); every folder has its row and every module its name."""
    rows = {match.group(1): set(re.findall(r"`(\w+)`", line))
            for line in README.read_text().splitlines()
            if (match := re.match(r"\| `(gpusweep/[\w/]*)`", line))}
    folders = {ROOT / "gpusweep", *(path.parent for path in (ROOT / "gpusweep").rglob("*.py"))}
    unnamed = []
    for folder in sorted(folders):
        key = folder.relative_to(ROOT).as_posix() + "/"
        modules = {path.stem for path in folder.glob("*.py")
                   if path.name not in ("__init__.py", "__main__.py")}
        unnamed += [f"{key}{name}" for name in sorted(modules - rows.get(key, set()))]
    assert not unnamed, f"README's module map does not name: {unnamed}"


def test_every_heading_has_a_blank_line_before_it():
    lines = README.read_text().splitlines()
    in_code, glued = False, []
    for number, line in enumerate(lines[1:], 2):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#") and lines[number - 2].strip():
            glued.append(f"line {number}: {line}")
    assert not glued, glued


def test_the_reference_leads_with_the_installed_command():
    """An installed user has ``gpusweep``, not a clone's ``tools/sweep.py``."""
    text = README.read_text()
    section = text[text.index("## Running a sweep"):]
    start = section.index("```bash\n") + len("```bash\n")
    block = section[start:section.index("\n```", start)]
    commands = [line for line in block.splitlines() if not line.startswith(" ")]
    assert commands and all(line.startswith("gpusweep ") for line in commands), commands
    assert "`python tools/sweep.py` (in a clone) and `python -m gpusweep` are the same " \
           "program" in " ".join(section.split())
