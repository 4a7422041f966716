"""What JetStream says about a delivery, read from its ack subject.

The ack subject of a delivered message carries its delivery count and the time the stream
stored it (ADR-15)::

    $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time ns>.<pending>
    $JS.ACK.<domain>.<acc>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time ns>.<pending>[.<x>]

nats-py's ``Msg.metadata`` parses every field into a dataclass with a ``datetime``; a
replica needs two numbers per task, so it reads just those.
"""

from __future__ import annotations

from typing import NamedTuple

V1_TOKENS = 9


class Delivery(NamedTuple):
    attempt: int
    """How many times this message has been delivered, this time included."""
    stored_at: float
    """Unix time at which the stream stored the message."""
    stream_seq: int


def delivery_of(ack_subject: str | None) -> Delivery:
    """The delivery count and storage time of a JetStream delivery.

    Raises:
        ValueError: ``ack_subject`` is not a JetStream ack subject.
    """
    tokens = (ack_subject or "").split(".")
    if len(tokens) < V1_TOKENS or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream delivery: {ack_subject!r}")
    base = 2 if len(tokens) == V1_TOKENS else 4
    return Delivery(
        attempt=int(tokens[base + 2]),
        stored_at=int(tokens[base + 5]) / 1e9,
        stream_seq=int(tokens[base + 3]),
    )
