"""Reading a stream's messages by direct get, with no consumer.

A role's NATS user may not create consumers (a consumer delivers whatever its filter
says, whatever the user's subscribe permissions), so readers of the event log (the event
tree, replay, a step waiting for a signal) ask the stream for the next message on a
subject after a sequence: ``$JS.API.DIRECT.GET.<stream>`` with ``{"seq": n,
"next_by_subj": subject}`` (nats-server 2.9 and later; the stream needs ``allow_direct``).
Each answer is one stored message, its original headers and bytes, plus the stream's
``Nats-Sequence`` and ``Nats-Time-Stamp``; a 404 means there is none after ``n``.

Example:
    >>> async for stored in read_from(mesh, "MESH_EVENTS", "mesh.event.W1.>"):  # doctest: +SKIP
    ...     print(stored.seq, stored.subject)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

STREAM_HEADERS = frozenset(
    {
        "Nats-Stream",
        "Nats-Subject",
        "Nats-Sequence",
        "Nats-Time-Stamp",
        "Nats-Num-Pending",
        "Nats-Last-Sequence",
    }
)
"""Headers a direct get adds to the stored message's own."""


class MessageStore(Protocol):
    """A stream's stored messages, read one at a time by sequence (JetStream's own
    context is one; so is a :class:`~jetmesh.MeshClient`)."""

    async def get_msg(
        self,
        stream_name: str,
        seq: int | None = None,
        subject: str | None = None,
        direct: bool | None = False,
        next: bool | None = False,
    ) -> RawStreamMsg: ...


@dataclass(frozen=True)
class Stored:
    """One message as the stream stored it."""

    subject: str
    seq: int
    data: bytes
    headers: dict[str, str]
    """The headers it was published with."""
    stored_at: float
    """When the stream stored it (Unix time)."""


async def next_stored(
    store: MessageStore, stream: str, subject: str, after: int = 0
) -> Stored | None:
    """The first message of ``stream`` on ``subject`` (wildcards allowed) with a sequence
    above ``after``, or None if there is none yet."""
    try:
        raw = await store.get_msg(stream, seq=after + 1, subject=subject, next=True, direct=True)
    except NotFoundError:
        return None
    headers = {k: v for k, v in (raw.headers or {}).items() if k not in STREAM_HEADERS}
    return Stored(
        subject=raw.subject or "",
        seq=raw.seq or 0,
        data=raw.data or b"",
        headers=headers,
        stored_at=raw.time.timestamp() if raw.time is not None else 0.0,
    )


async def read_from(
    store: MessageStore, stream: str, subject: str, after: int = 0
) -> AsyncIterator[Stored]:
    """Every message of ``stream`` on ``subject`` after ``after``, in stream order, up to
    the last one stored when it is reached."""
    while (stored := await next_stored(store, stream, subject, after)) is not None:
        yield stored
        after = stored.seq
