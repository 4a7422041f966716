"""What changed between two JSON values, field by field, as a re-run's divergence shows it.

Example:
    >>> field_changes({"total": 6, "items": [{"qty": 2}]}, {"total": 7, "items": [{"qty": 3}]})
    ['items[0].qty: 2 -> 3', 'total: 6 -> 7']
"""

from __future__ import annotations

import json

MAX_CHANGES = 20
"""The most changed fields listed; the rest are counted in one last line."""

ABSENT = "(absent)"
"""Shown for a field one side does not have."""


def field_changes(expected: object, got: object, *, limit: int = MAX_CHANGES) -> list[str]:
    """Each field (a path: ``a.b[2].c``) whose value differs, as ``path: before -> after``,
    in path order; at most ``limit`` lines, then ``... and N more``. Equal values: none."""
    found: list[str] = []
    _walk(expected, got, "", found)
    found.sort()
    if len(found) > limit:
        found[limit:] = [f"... and {len(found) - limit} more"]
    return found


def _walk(expected: object, got: object, path: str, found: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted({*expected, *got}, key=str):
            inner = f"{path}.{key}" if path else str(key)
            _walk(expected.get(key, _Absent), got.get(key, _Absent), inner, found)
    elif isinstance(expected, list) and isinstance(got, list):
        for n in range(max(len(expected), len(got))):
            was = expected[n] if n < len(expected) else _Absent
            now = got[n] if n < len(got) else _Absent
            _walk(was, now, f"{path}[{n}]", found)
    elif expected != got or type(expected) is not type(got):
        found.append(f"{path or '(the value)'}: {_shown(expected)} -> {_shown(got)}")


class _Absent:
    """A field one side lacks."""


def _shown(value: object) -> str:
    if value is _Absent:
        return ABSENT
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
