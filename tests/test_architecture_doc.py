"""docs/ARCHITECTURE.md opens with the tree: every folder of the layout, of the library and
every mesh under services/ has its line, and every line names a folder that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "shared" / "jetmesh"
LAYOUT = ("shared", "services", "subjects", "tests", "loadtest", "compose", "docs")


def opening_tree() -> list[str]:
    """The lines of the page's first code block, which must come before any section."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    head, _, rest = text.partition("```\n")
    assert "## " not in head, "the tree comes first, before any section"
    return rest.partition("```\n")[0].splitlines()


def named_paths(lines: list[str]) -> set[str]:
    """Each line's folder as a path from the repository root (nesting by indentation)."""
    paths: set[str] = set()
    parent = ""
    for line in lines:
        match = re.match(r"( *)(\S+)\s{2,}\S", line)
        assert match, f"not '<folder>  <what it holds>': {line!r}"
        indent, name = match.groups()
        path = name if not indent else f"{parent.rstrip('/')}/{name}"
        if not indent:
            parent = name
        paths.add(path.rstrip("/"))
    return paths


def test_every_folder_has_its_line() -> None:
    paths = named_paths(opening_tree())
    wanted = {"shared/jetmesh", *LAYOUT[1:], "pyproject.toml"}
    wanted |= {
        f"shared/jetmesh/{p.name}" for p in LIBRARY.iterdir() if (p / "__init__.py").exists()
    }
    wanted |= {
        f"services/{p.name}" for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()
    }
    missing = sorted(wanted - paths)
    assert not missing, f"docs/ARCHITECTURE.md's tree lacks: {missing}"


def test_every_line_names_what_exists() -> None:
    stale = sorted(p for p in named_paths(opening_tree()) if not (ROOT / p).exists())
    assert not stale, f"docs/ARCHITECTURE.md's tree names what is gone: {stale}"
