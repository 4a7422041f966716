"""What a stream answers to a publish, and a message waiting for that answer.

A JetStream publish with a reply subject gets a small JSON ack: the stream and sequence
that stored it (``duplicate`` when its ``Nats-Msg-Id`` was stored already), or an error;
an empty reply is a "no responders" status (no stream takes the subject, or JetStream is
not up yet). A message of :meth:`~jetmesh.bus.publisher.StreamPublisher.publish_later`
waits in a :class:`Pending` until a stream has stored it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg

RETRY_FIRST_S = 0.25
RETRY_MOST_S = 1.0
"""A message of :meth:`~jetmesh.bus.publisher.StreamPublisher.publish_later` the stream did
not store (no stream answered, an error, a lost connection) goes again after RETRY_FIRST_S,
twice that after the next failure, and so on up to RETRY_MOST_S between tries."""


class PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, object] | None = None


_ack_decoder = msgspec.json.Decoder(PubAck)


def decode_ack(msg: Msg) -> PubAck:
    """The stream's ack; an empty one (a "no responders" status) has no stream."""
    try:
        return _ack_decoder.decode(msg.data) if msg.data else PubAck()
    except msgspec.DecodeError:
        return PubAck(error={"description": "unreadable ack"})


@dataclass(slots=True)
class Pending:
    """A message sent without waiting for its ack, until a stream has stored it."""

    subject: str
    data: bytes
    headers: dict[str, str]
    deadline: float
    attempts: int = 1
    failed: bool = False
    queued: bool = False
    """Waiting for the group commit: not sent yet, not the sweeper's to send."""

    def mark_failed(self) -> None:
        """Not stored: the sweeper sends it again after its backoff."""
        self.failed = True
        backoff = min(RETRY_FIRST_S * 2 ** (self.attempts - 1), RETRY_MOST_S)
        self.deadline = time.monotonic() + backoff
