"""Write (or check) the generated files of the catalogue: schemas and ``catalogue.json``.

Usage::

    python -m subjects.generate            # write subjects/schemas/*.json and catalogue.json
    python -m subjects.generate --check    # exit 1 listing stale, missing or extra files

Both go through :func:`render`, so what is checked is exactly what would be written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from .catalogue import CATALOGUE, SCHEMA_TYPES, mesh_type, schema_file
from .jsonschema import schema_of

SUBJECTS_DIR: Final = Path(__file__).resolve().parent
SCHEMAS: Final = "schemas"
CATALOGUE_FILE: Final = "catalogue.json"
HINT: Final = "run `make schemas` (python -m subjects.generate) and commit the result"


def dump(value: Any) -> str:
    """The committed JSON form: sorted keys, indent 2, trailing newline."""
    return json.dumps(value, sort_keys=True, indent=2) + "\n"


def render() -> dict[str, str]:
    """Every generated file, by path relative to ``subjects/``, and its content."""
    files: dict[str, str] = {}
    for tp, _ in SCHEMA_TYPES:
        name = mesh_type(tp)
        path = f"{SCHEMAS}/{schema_file(name)}"
        if path in files:
            raise ValueError(f"two catalogued types share the schema file {path}")
        files[path] = dump(schema_of(tp, name))
    files[CATALOGUE_FILE] = dump(msgspec.to_builtins(CATALOGUE))
    return files


def problems(root: Path = SUBJECTS_DIR) -> list[str]:
    """Differences between :func:`render` and the files under ``root``, one line each."""
    expected = render()
    found: list[str] = []
    for path, content in sorted(expected.items()):
        target = root / path
        if not target.exists():
            found.append(f"missing: {path}")
        elif target.read_text(encoding="utf-8") != content:
            found.append(f"stale:   {path}")
    for target in sorted((root / SCHEMAS).glob("*.json")):
        path = target.relative_to(root).as_posix()
        if path not in expected:
            found.append(f"extra:   {path}")
    return found


def write(root: Path = SUBJECTS_DIR) -> list[str]:
    """Write every generated file under ``root`` and delete extra schemas; return changes."""
    changes = problems(root)
    expected = render()
    for path, content in expected.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8", newline="\n")
    for target in (root / SCHEMAS).glob("*.json"):
        if target.relative_to(root).as_posix() not in expected:
            target.unlink()
    return changes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subjects.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--dir", type=Path, default=SUBJECTS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.dir)
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print(f"generated files are out of date: {HINT}", file=sys.stderr)
            return 1
        print(f"{len(render())} generated files are up to date")
        return 0
    changes = write(args.dir)
    for line in changes:
        print(line.replace("missing:", "written:").replace("stale:  ", "updated:"))
    print(f"{len(changes)} of {len(render())} generated files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
