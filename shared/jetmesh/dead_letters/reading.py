"""Reading dead letters back: what ``jetmesh dlq`` lists and shows, and redrive reads.

A dead letter is read by its sequence in the dead-letter stream (``MESH_DLQ``) from any
:class:`~jetmesh.bus.direct.MessageStore` (a :class:`~jetmesh.MeshClient` connected as the
admin, or a JetStream context). A task that ran out of deliveries without being kept is
stored as a record naming its sequence in the tasks stream; :func:`with_task` reads the
task itself from there.

Example:
    >>> letters = await list_dead_letters(admin, stream, "mesh.dlq.>")  # doctest: +SKIP
    >>> letter = await with_task(admin, tasks_stream, letters[0])       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from nats.js.errors import NotFoundError

from .._exceptions import ConfigError, RejectedMessage
from ..bus.direct import MessageStore
from ..envelope import Envelope, decode_envelope
from .headers import (
    AGENT_HEADER,
    DETAIL_HEADER,
    KEPT_HEADERS,
    MSG_ID_HEADER,
    REASON_HEADER,
    SUBJECT_HEADER,
    TASK_SEQ_HEADER,
    TIME_HEADER,
    header_text,
)


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as stored: the refused bytes, their headers, and why.

    ``agent``, ``reason``, ``detail``, ``subject`` and ``at`` are what the dead-lettering
    process wrote in its ``Mesh-Dlq-*`` headers: claims, like the bytes. What the stream
    itself vouches for is ``stored_on``, the subject it was stored on, which only that
    role (and the admin) may publish to on servers that enforce the policy.
    """

    seq: int
    agent: str
    reason: str
    detail: str
    subject: str
    """The subject the message was refused on."""
    at: float
    data: bytes
    headers: dict[str, str]
    stored_on: str = ""
    """The dead-letter subject it was stored on (``<prefix>.dlq.<agent>``)."""

    @property
    def owner(self) -> str:
        """The agent whose dead-letter subject holds it (the last token of ``stored_on``)."""
        return self.stored_on.rsplit(".", 1)[-1] if self.stored_on else ""

    @property
    def task_seq(self) -> int | None:
        """The task's sequence in the tasks stream, when the dead letter names one."""
        value = self.headers.get(TASK_SEQ_HEADER, "")
        return int(value) if value.isdigit() and value.isascii() else None

    def envelope(self) -> Envelope | None:
        """The refused envelope, if its bytes are one."""
        try:
            return decode_envelope(self.data)
        except RejectedMessage:
            return None


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def _dead_letter(
    seq: int, data: bytes, headers: Mapping[str, object] | None, stored_on: str
) -> DeadLetter:
    h = {name: header_text(value) for name, value in (headers or {}).items()}
    return DeadLetter(
        seq=seq,
        agent=h.get(AGENT_HEADER, ""),
        reason=h.get(REASON_HEADER, ""),
        detail=h.get(DETAIL_HEADER, ""),
        subject=h.get(SUBJECT_HEADER, ""),
        at=_float(h.get(TIME_HEADER, "0") or "0"),
        data=data,
        headers=h,
        stored_on=stored_on,
    )


async def list_dead_letters(
    store: MessageStore, stream: str, subject: str, *, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters on ``subject`` (``<prefix>.dlq.>`` or one agent's), oldest first."""
    out: list[DeadLetter] = []
    seq = 1
    while len(out) < limit:
        try:
            msg = await store.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        assert msg.seq is not None
        out.append(_dead_letter(msg.seq, msg.data or b"", msg.headers, msg.subject or ""))
        seq = msg.seq + 1
    return out


async def get_dead_letter(store: MessageStore, stream: str, seq: int) -> DeadLetter:
    """One dead letter by its sequence number.

    Raises:
        ConfigError: there is no dead letter ``seq``.
    """
    try:
        msg = await store.get_msg(stream, seq=seq)
    except NotFoundError:
        raise ConfigError(f"no dead letter {seq} in {stream}") from None
    return _dead_letter(seq, msg.data or b"", msg.headers, msg.subject or "")


async def with_task(store: MessageStore, tasks_stream: str, letter: DeadLetter) -> DeadLetter:
    """``letter`` with its task's bytes and headers read from the tasks stream by sequence,
    when it was stored without them (a task out of deliveries that its replica had not
    kept) and the stream still holds a task of the dead letter's role at that sequence.
    Only the admin may read the tasks stream by sequence; otherwise ``letter`` as it is."""
    seq = letter.task_seq
    if letter.data or seq is None or not letter.owner:
        return letter
    try:
        msg = await store.get_msg(tasks_stream, seq=seq)
    except NotFoundError:
        return letter
    if not (msg.subject or "").endswith(f".agent.{letter.owner}.task"):
        return letter
    given = {name: header_text(value) for name, value in (msg.headers or {}).items()}
    kept = {name: given[name] for name in KEPT_HEADERS if name in given}
    if "Nats-Msg-Id" in given:
        kept[MSG_ID_HEADER] = given["Nats-Msg-Id"]
    return replace(letter, data=msg.data or b"", headers={**letter.headers, **kept})
