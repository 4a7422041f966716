"""How a value read from an unverified message appears in an error or a log line: escaped
(ASCII, no control characters) and bounded, whatever its size.

Example:
    >>> shown("ghost-" + "x" * 8000)
    "'ghost-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (8006 characters)"
"""

from __future__ import annotations

SHOWN_CHARACTERS = 48
"""How many characters of an untrusted value an error shows."""


def shown(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """``value`` as an escaped ASCII literal of at most ``limit`` characters, and its
    length when it was cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return ascii(text)
    return f"{text[:limit]!a}... ({len(text)} characters)"
