"""The record of a side effect's claim, kept in its role's own Redis key
(:func:`jetmesh.memory.keys.once`) by ``ctx.once`` and the tool gateway's ledger: ``running``
while the effect runs (with the run that claimed it), ``done`` with the effect's result.
A claim still ``running`` that no live run holds is in doubt: the effect may or may not
have happened (``jetmesh dlq settle``, :mod:`jetmesh.dead_letters.settle`).

Example:
    >>> decode_claim(b'{"state":"running","holder":"replica-1#1"}').state
    'running'
"""

from __future__ import annotations

import msgspec

RUNNING = "running"
DONE = "done"


class EffectClaim(msgspec.Struct, frozen=True):
    state: str
    """``running`` (claimed) or ``done``."""
    holder: str = ""
    """The run that claimed it: ``<instance>#<attempt>``."""
    result: msgspec.Raw = msgspec.Raw(b"null")
    """The effect's result, once ``done``."""


decode_claim = msgspec.json.Decoder(EffectClaim).decode
