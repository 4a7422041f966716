"""Compact JWS texts (caller tokens, certificates, approvals, delegation links) read
strictly, and their base64url (RFC 4648 §5, without padding, as JOSE uses it).

One text decodes to one byte string and one byte string has one text: no ``=`` padding,
no ``+`` or ``/``, nothing outside the alphabet, and the last character carries no stray
bits (``AB`` and ``AC`` would both decode to ``b"\\x00"``; only ``AA`` is accepted). The
header and the claims are JSON objects that name no member twice (JSON parsers disagree
on which one wins). So a token's or a link's text, and its digest, cannot change under a
valid signature, and every reader reads the same claims.

Example:
    >>> b64e(b"\\x00")
    'AA'
    >>> b64d("AA")
    b'\\x00'
    >>> b64d("AB")
    Traceback (most recent call last):
    ...
    ValueError: base64url text with stray bits in its last character
"""

from __future__ import annotations

import base64
import binascii
import re

from .._exceptions import Malformed
from ..envelope import duplicate_key

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {c: n for n, c in enumerate(_ALPHABET)}
_TEXT_RE = re.compile(r"[A-Za-z0-9_-]*\Z")
_STRAY_BITS = {2: 0b1111, 3: 0b11}
"""By the length of the text modulo 4, the low bits of the last character that must be 0."""
_PADDING = ("", "", "==", "=")
_STANDARD = bytes.maketrans(b"-_", b"+/")


def b64e(data: bytes) -> str:
    """base64url without padding, as JWTs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Decode base64url without padding, strictly: the one text :func:`b64e` makes.

    Raises:
        ValueError: padding, a character outside the alphabet, an impossible length, or
            stray bits in the last character.
    """
    check_b64(text)
    return binascii.a2b_base64((text + _PADDING[len(text) % 4]).encode().translate(_STANDARD))


def check_b64(text: str) -> None:
    """Refuse ``text`` unless it is strict base64url (as :func:`b64d`), without decoding.

    Raises:
        ValueError: padding, a character outside the alphabet, an impossible length, or
            stray bits in the last character.
    """
    if not _TEXT_RE.match(text):
        raise ValueError("base64url text with a character outside the alphabet (or padding)")
    rest = len(text) % 4
    if rest == 1:
        raise ValueError("base64url text of an impossible length")
    if rest and _VALUE[text[-1]] & _STRAY_BITS[rest]:
        raise ValueError("base64url text with stray bits in its last character")


def jws_parts(text: str) -> tuple[bytes, bytes, bytes]:
    """The decoded header, payload and signature of a compact JWS, each decoded strictly.

    Raises:
        ValueError: not three parts, or a part that is not strict base64url.
    """
    parts = text.split(".")
    if len(parts) != 3:
        raise ValueError(f"a compact JWS has 3 parts, not {len(parts)}")
    header, payload, signature = (b64d(part) for part in parts)
    return header, payload, signature


def check_jws(text: str) -> None:
    """Refuse a compact JWS that is not strictly encoded, or whose header or claims are not
    JSON objects naming each member once (before an ordinary JWT library reads it).

    Raises:
        ValueError: what is wrong with it.
    """
    header, payload, _ = jws_parts(text)
    for part, data in (("header", header), ("claims", payload)):
        try:
            twice = duplicate_key(data)
        except Malformed as exc:
            raise ValueError(f"its {part} is not a JSON object: {exc.detail}") from None
        if twice is not None:
            raise ValueError(f"its {part} names {twice[:32]!r} twice")
