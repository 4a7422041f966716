"""Dead letters: a refused or failed message, kept with its reason on ``<prefix>.dlq.<agent>``.

The original bytes and headers (signature included) are kept unchanged, so a dead letter can
be inspected, verified and sent back once the cause is fixed. The reason travels in
``Mesh-Dlq-*`` headers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ._exceptions import ConfigError, RejectedMessage
from .envelope import Envelope, decode_envelope

REASON_HEADER = "Mesh-Dlq-Reason"
DETAIL_HEADER = "Mesh-Dlq-Detail"
SUBJECT_HEADER = "Mesh-Dlq-Subject"
AGENT_HEADER = "Mesh-Dlq-Agent"
TIME_HEADER = "Mesh-Dlq-Time"
MAX_DETAIL = 1024


def dead_letter_headers(
    original: Mapping[str, str] | None,
    *,
    subject: str,
    data: bytes,
    agent: str,
    reason: str,
    detail: str,
) -> dict[str, str]:
    """Headers of a dead letter: the original ones plus the reason.

    The ``Nats-Msg-Id`` is derived from the message and the reason, so the same message
    refused twice for the same reason (a redelivery) is stored once.
    """
    headers = {k: v for k, v in (original or {}).items() if k != "Nats-Msg-Id"}
    digest = hashlib.sha256(data).hexdigest()[:32]
    headers.update(
        {
            REASON_HEADER: reason,
            DETAIL_HEADER: detail.replace("\r", " ").replace("\n", " ")[:MAX_DETAIL],
            SUBJECT_HEADER: subject,
            AGENT_HEADER: agent,
            TIME_HEADER: f"{time.time():.6f}",
            "Nats-Msg-Id": f"dlq-{agent}-{reason}-{digest}",
        }
    )
    return headers


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as stored: the refused bytes, their headers, and why."""

    seq: int
    agent: str
    reason: str
    detail: str
    subject: str
    """The subject the message was refused on."""
    at: float
    data: bytes
    headers: dict[str, str]

    def envelope(self) -> Envelope | None:
        """The refused envelope, if its bytes are one."""
        try:
            return decode_envelope(self.data)
        except RejectedMessage:
            return None


def _dead_letter(seq: int, data: bytes, headers: Mapping[str, str] | None) -> DeadLetter:
    h = dict(headers or {})
    return DeadLetter(
        seq=seq,
        agent=h.get(AGENT_HEADER, ""),
        reason=h.get(REASON_HEADER, ""),
        detail=h.get(DETAIL_HEADER, ""),
        subject=h.get(SUBJECT_HEADER, ""),
        at=float(h.get(TIME_HEADER, "0") or 0),
        data=data,
        headers=h,
    )


async def list_dead_letters(
    js: JetStreamContext, stream: str, subject: str, *, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters on ``subject`` (``<prefix>.dlq.>`` or one agent's), oldest first."""
    out: list[DeadLetter] = []
    seq = 1
    while len(out) < limit:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        assert msg.seq is not None
        out.append(_dead_letter(msg.seq, msg.data or b"", msg.headers))
        seq = msg.seq + 1
    return out


async def get_dead_letter(js: JetStreamContext, stream: str, seq: int) -> DeadLetter:
    """One dead letter by its sequence number.

    Raises:
        ConfigError: there is no dead letter ``seq``.
    """
    try:
        msg = await js.get_msg(stream, seq=seq)
    except NotFoundError:
        raise ConfigError(f"no dead letter {seq} in {stream}") from None
    return _dead_letter(seq, msg.data or b"", msg.headers)
