"""Printing what the mesh holds without trusting it.

Everything the commands print from a message, an event, a dead letter or a header was
written by some process of the mesh, possibly a compromised one, so it is shown as data:

- rich markup in it (``[/dim]``, ``[link=...]``) is shown as text, never interpreted;
- control characters (C0 and C1, DEL: a terminal acts on ``ESC [``), Unicode format
  characters (bidirectional overrides, zero-width), line and paragraph separators and
  lone surrogates (bytes that were not UTF-8) are shown as ``\\xNN`` / ``\\uNNNN``;
  newlines too, except in multi-line text;
- long values are cut, with the number of characters left out.

Example:
    >>> markup("[/dim]\\x1b[2J")
    '\\\\[/dim]\\\\x1b[2J'
    >>> plain("a" * 10, limit=4)
    'aaaa…(+6)'
"""

from __future__ import annotations

import unicodedata

import msgspec
from rich.highlighter import JSONHighlighter
from rich.markup import escape
from rich.text import Text

from ..dead_letters import header_text

MAX_LEN = 2000
"""Characters of one value shown by default."""

_json_highlighter = JSONHighlighter()


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _shown(ch: str, lines: bool) -> str:
    if ch.isprintable() or (ch == "\n" and lines):
        return ch
    if unicodedata.category(ch) == "Zs":  # spaces: harmless
        return ch
    return _escaped(ch)


def plain(value: object, *, limit: int = MAX_LEN, lines: bool = False) -> str:
    """``value`` as text that is safe to print: see the module's docstring (no markup
    escaping: for :class:`rich.text.Text` and plain output).

    Args:
        value: a string, bytes (decoded as UTF-8, U+FFFD where they are not), a header
            value as the NATS client gave it, or anything else (``str()``).
        limit: characters kept; the rest is cut and counted.
        lines: keep newlines (multi-line text).
    """
    text = value if isinstance(value, str) else header_text(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    if not text.isprintable():
        text = "".join(_shown(ch, lines) for ch in text)
    return f"{text}…(+{cut})" if cut > 0 else text


def markup(value: object, *, limit: int = MAX_LEN, lines: bool = False) -> str:
    """``value`` made safe (:func:`plain`) and escaped, to put inside rich markup."""
    return escape(plain(value, limit=limit, lines=lines))


def text(value: object, *, limit: int = MAX_LEN, style: str = "") -> Text:
    """``value`` made safe (:func:`plain`) as a rich ``Text`` (never parsed as markup)."""
    return Text(plain(value, limit=limit), style=style)


def json_text(data: bytes, *, limit: int = 64 * 1024) -> Text | None:
    """``data`` as indented, highlighted JSON made safe to print, or None if it is not
    JSON. Non-ASCII text is shown as it is, except what :func:`plain` escapes (inside a
    JSON string, those escapes are JSON's own)."""
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    pretty = msgspec.json.format(msgspec.json.encode(decoded), indent=2).decode()
    return _json_highlighter(Text(plain(pretty, limit=limit, lines=True)))
