"""Write (or check) the generated files of the catalogue: schemas, ``catalogue.json`` and
``asyncapi.json``.

Usage::

    python -m subjects.generate            # write schemas/*.json, catalogue.json, asyncapi.json
    python -m subjects.generate --check    # exit 1 listing stale, missing or extra files

Both go through :func:`render`, so what is checked is exactly what would be written. The
conformance vectors (``python -m subjects.vectors``) use the same :class:`Output` and
:func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from .asyncapi import ASYNCAPI_FILE, document
from .catalogue import CATALOGUE, SCHEMA_TYPES, mesh_type, schema_file
from .jsonschema import schema_of

SUBJECTS_DIR: Final = Path(__file__).resolve().parent
SCHEMAS: Final = "schemas"
CATALOGUE_FILE: Final = "catalogue.json"
OWNED: Final = (f"{SCHEMAS}/*.json",)
"""Files under ``subjects/`` that only the generator writes: one it does not render is extra."""
HINT: Final = "run `make schemas` (python -m subjects.generate) and commit the result"


def dump(value: Any) -> str:
    """The committed JSON form: sorted keys, indent 2, trailing newline."""
    return json.dumps(value, sort_keys=True, indent=2) + "\n"


@dataclass(frozen=True)
class Output:
    """A generator's files under one directory, and which files found there are its own.

    Example:
        >>> out = Output({"a.json": "{}\\n"}, owned=("*.json",), label="vectors/")
        >>> out.problems(Path("/nonexistent"))
        ['missing: vectors/a.json']
    """

    files: Mapping[str, str]
    """Content by path relative to the directory."""
    owned: tuple[str, ...]
    """Glob patterns, relative to the directory, of files that only this generator writes: one
    that matches and is not in ``files`` is reported as extra, and deleted on write."""
    label: str = ""
    """Written before each path in the report lines (``vectors/``)."""

    def extra(self, root: Path) -> list[Path]:
        """Owned files under ``root`` that are not rendered, sorted."""
        found = {p for pattern in self.owned for p in root.glob(pattern)}
        return sorted(p for p in found if p.relative_to(root).as_posix() not in self.files)

    def problems(self, root: Path) -> list[str]:
        """How the files under ``root`` differ from :attr:`files`, one line each."""
        lines: list[str] = []
        for path, content in sorted(self.files.items()):
            target = root / path
            if not target.exists():
                lines.append(f"missing: {self.label}{path}")
            elif target.read_text(encoding="utf-8") != content:
                lines.append(f"stale:   {self.label}{path}")
        for target in self.extra(root):
            lines.append(f"extra:   {self.label}{target.relative_to(root).as_posix()}")
        return lines

    def write(self, root: Path) -> list[str]:
        """Write every file under ``root``, delete extra ones; return what changed."""
        changes = self.problems(root)
        for target in self.extra(root):
            target.unlink()
        for path, content in self.files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8", newline="\n")
        return changes


def run(
    argv: Sequence[str] | None,
    *,
    prog: str,
    doc: str | None,
    root: Path,
    output: Callable[[], Output],
    noun: str,
    hint: str,
) -> int:
    """The command line of a generator: write its files, or ``--check`` them.

    ``output`` is called once. Returns the exit status: 1 when ``--check`` finds a difference.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--dir", type=Path, default=root, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = output()
    if args.check:
        found = out.problems(args.dir)
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print(f"{noun} are out of date: {hint}", file=sys.stderr)
            return 1
        print(f"{len(out.files)} {noun} are up to date")
        return 0
    changes = out.write(args.dir)
    for line in changes:
        print(line.replace("missing:", "written:").replace("stale:  ", "updated:"))
    print(f"{len(changes)} of {len(out.files)} {noun} changed")
    return 0


def render() -> dict[str, str]:
    """Every generated file, by path relative to ``subjects/``, and its content."""
    files: dict[str, str] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for tp, _ in SCHEMA_TYPES:
        name = mesh_type(tp)
        path = f"{SCHEMAS}/{schema_file(name)}"
        if path in files:
            raise ValueError(f"two catalogued types share the schema file {path}")
        schemas[name] = schema_of(tp, name)
        files[path] = dump(schemas[name])
    files[CATALOGUE_FILE] = dump(msgspec.to_builtins(CATALOGUE))
    files[ASYNCAPI_FILE] = dump(document(CATALOGUE, schemas))
    return files


def output() -> Output:
    """The catalogue's generated files, as an :class:`Output`."""
    return Output(render(), OWNED)


def problems(root: Path = SUBJECTS_DIR) -> list[str]:
    """Differences between :func:`render` and the files under ``root``, one line each."""
    return output().problems(root)


def write(root: Path = SUBJECTS_DIR) -> list[str]:
    """Write every generated file under ``root`` and delete extra schemas; return changes."""
    return output().write(root)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        argv,
        prog="python -m subjects.generate",
        doc=__doc__,
        root=SUBJECTS_DIR,
        output=output,
        noun="generated files",
        hint=HINT,
    )


if __name__ == "__main__":
    sys.exit(main())
