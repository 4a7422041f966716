"""Sortable unique ids: ULIDs (48-bit millisecond time + 80 random bits, Crockford base32).

Generated on the hot path (every message): the random part is encoded two digits at a
time from a table, the time part is cached per millisecond, the random bits are read from
the OS's generator 4 KiB at a time (a pool a forked child does not share), and decoding
maps Crockford's alphabet onto ``int(text, 32)``.

Example:
    >>> len(new_id())
    26
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_TO_INT_DIGITS = str.maketrans(
    {c: "!" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"}
    | dict(zip(_CROCKFORD + _CROCKFORD.lower(), _BASE32HEX + _BASE32HEX, strict=True))
)
"""Crockford digits to the digits ``int(text, 32)`` reads; any other letter to ``!``."""
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
"""Two Crockford digits for every 10-bit value."""

_last_ms = -1
_last_prefix = ""

_POOL_BYTES = 4096
_pool = b""
_taken = 0
"""Random bytes from ``os.urandom`` and how many are used: one read per 409 ids rather
than one each (an id's 80 bits are as unpredictable as before: message ids must be, or a
role could store a message under another's next id first and have it dropped as a
duplicate)."""


def _forget_pool() -> None:
    """In a forked child: draw its own bytes, never its parent's next ones."""
    global _pool, _taken
    _pool, _taken = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def _time_part(ms: int) -> str:
    chars = []
    for _ in range(10):
        ms, rem = divmod(ms, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


def new_id() -> str:
    """A new ULID string, e.g. ``01JD7W3K8Q4Z6X2B9M5N0P1R3T``."""
    global _last_ms, _last_prefix, _pool, _taken
    ms = time.time_ns() // 1_000_000
    if ms != _last_ms:
        _last_ms, _last_prefix = ms, _time_part(ms)
    if _taken + 10 > len(_pool):
        _pool, _taken = os.urandom(_POOL_BYTES), 0
    r = int.from_bytes(_pool[_taken : _taken + 10], "big")
    _taken += 10
    p = _PAIRS
    random_part = (
        p[r >> 70]
        + p[(r >> 60) & 1023]
        + p[(r >> 50) & 1023]
        + p[(r >> 40) & 1023]
        + p[(r >> 30) & 1023]
        + p[(r >> 20) & 1023]
        + p[(r >> 10) & 1023]
        + p[r & 1023]
    )
    return _last_prefix + random_part


def id_value(ulid: str) -> int:
    """The 128-bit integer a ULID string encodes.

    Raises:
        ValueError: when ``ulid`` is not a ULID string.
    """
    if len(ulid) != 26 or ulid[0] > "7" or not (ulid.isascii() and ulid.isalnum()):
        raise ValueError(f"not a ULID: {ulid!r}")
    try:
        return int(ulid.translate(_TO_INT_DIGITS), 32)
    except ValueError:  # a letter outside Crockford's alphabet
        raise ValueError(f"not a ULID: {ulid!r}") from None


def id_time(ulid: str) -> float:
    """The Unix time (seconds) encoded in a ULID.

    Raises:
        ValueError: when ``ulid`` is not a ULID string.
    """
    return (id_value(ulid) >> 80) / 1000
