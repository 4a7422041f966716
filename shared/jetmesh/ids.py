"""Sortable unique ids: ULIDs (48-bit millisecond time + 80 random bits, Crockford base32).

Generated on the hot path (every message), so the base32 work is done by the C codec
of :mod:`base64` and the time part is cached per millisecond.

Example:
    >>> len(new_id())
    26
"""

from __future__ import annotations

import base64
import os
import time

_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans(_RFC4648, _CROCKFORD)
_FROM_CROCKFORD = str.maketrans(_CROCKFORD + _CROCKFORD.lower(), _RFC4648 + _RFC4648)
_ULID_CHARS = frozenset(_CROCKFORD + _CROCKFORD.lower())

_last_ms = -1
_last_prefix = ""


def _time_part(ms: int) -> str:
    chars = []
    for _ in range(10):
        ms, rem = divmod(ms, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


def new_id() -> str:
    """A new ULID string, e.g. ``01JD7W3K8Q4Z6X2B9M5N0P1R3T``."""
    global _last_ms, _last_prefix
    ms = time.time_ns() // 1_000_000
    if ms != _last_ms:
        _last_ms, _last_prefix = ms, _time_part(ms)
    random_part = base64.b32encode(os.urandom(10)).decode("ascii").translate(_TO_CROCKFORD)
    return _last_prefix + random_part


def id_value(ulid: str) -> int:
    """The 128-bit integer a ULID string encodes.

    Raises:
        ValueError: when ``ulid`` is not a ULID string.
    """
    if len(ulid) != 26 or ulid[0] > "7" or not _ULID_CHARS.issuperset(ulid):
        raise ValueError(f"not a ULID: {ulid!r}")
    # 26 base32 digits are 130 bits; six leading zero digits make 32 digits = 20 bytes.
    raw = base64.b32decode("AAAAAA" + ulid.translate(_FROM_CROCKFORD))
    return int.from_bytes(raw[4:], "big")


def id_time(ulid: str) -> float:
    """The Unix time (seconds) encoded in a ULID.

    Raises:
        ValueError: when ``ulid`` is not a ULID string.
    """
    return (id_value(ulid) >> 80) / 1000
