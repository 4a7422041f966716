"""Storing a dead letter, and giving up on one that cannot be stored.

A dead letter goes on ``<prefix>.dlq.<agent>`` (stream ``MESH_DLQ``) with the original's
bytes and the headers of :mod:`.headers`. One that cannot be stored (the dead-letter stream
refuses it or does not answer) is tried again with the delivery's backoff, at most
``max_deliver`` times in all; then the message is given up on and a ``dead-letter-failed``
event says so, with the error and, when known, the task's sequence in the tasks stream
(where the admin can still read it). Audit events about a message whose envelope could not
be read go to the workflow ``_unverified``.

Example:
    >>> await dead_letter(mesh, msg.subject, msg.data, msg.headers,      # doctest: +SKIP
    ...                   "max-deliveries", "delivered 5 times without an ack")
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from .. import events as ev
from .._exceptions import PublishFailed
from ..envelope import Envelope
from ..mesh_protocols import EventWriting, Member, Storing
from ..telemetry import metrics
from .headers import dead_letter_headers

log = logging.getLogger("jetmesh.dead_letters")


class DeadLettering(EventWriting, Storing, Protocol):
    """What dead-lettering takes: storing the letter on this identity's dead-letter
    subject, and writing the audit events."""


DEAD_LETTER_TIMEOUT_S = 5.0

UNVERIFIED_WORKFLOW = "_unverified"
"""Workflow under which rejects are audited when the sender's envelope could not be read."""

DEAD_LETTER_FAILED = "dead-letter-failed"
"""Event kind: a message given up on without a dead letter (the dead-letter stream refused
it every time); ``reason`` is why it was given up on, ``detail`` the subject, the task's
stream sequence when known, and the last error."""


def audit_workflow(mesh: Member, envelope: Envelope | None) -> str:
    """The workflow an audit event about ``envelope`` goes to: its own when it was read and
    is a valid subject token, else :data:`UNVERIFIED_WORKFLOW`."""
    if envelope is None:
        return UNVERIFIED_WORKFLOW
    try:
        mesh.subjects.event(envelope.workflow, ev.REJECTED)
    except ValueError:
        return UNVERIFIED_WORKFLOW
    return envelope.workflow


async def dead_letter(
    mesh: DeadLettering,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    reason: str,
    detail: str,
    *,
    task_seq: int | None = None,
) -> None:
    """Store a message on ``mesh``'s agent's dead-letter subject with the reason.

    Raises:
        PublishFailed: the dead-letter stream refused it, no stream took it, or no answer
            came within :data:`DEAD_LETTER_TIMEOUT_S`.
    """
    dl_headers = dead_letter_headers(
        headers,
        subject=subject,
        data=data,
        agent=mesh.name,
        reason=reason,
        detail=detail,
        task_seq=task_seq,
    )
    try:
        async with asyncio.timeout(DEAD_LETTER_TIMEOUT_S):
            # no stream: fail now; the delivery's own backoff tries again (max_deliver)
            await mesh.store(mesh.subjects.dlq(mesh.name), data, dl_headers, no_stream_s=0.0)
    except PublishFailed:
        raise
    except Exception as exc:  # timed out, disconnected: the same for the caller
        raise PublishFailed(f"dead letter of {subject} not stored: {exc!r}") from exc
    metrics.dead_lettered(mesh.name, reason)


async def dead_letter_failed(
    mesh: EventWriting,
    subject: str,
    envelope: Envelope | None,
    reason: str,
    error: Exception,
    *,
    task_seq: int | None = None,
    caller: str = "",
    message: str = "",
) -> None:
    """Write the ``dead-letter-failed`` event of a message given up on without a dead
    letter (in its workflow when its envelope was read, else in ``_unverified``), naming
    it by its ``Nats-Msg-Id`` (``message``, as :func:`.headers.refused_message_id` makes
    it printable) and its tasks stream sequence (``seq``) when known."""
    where = f" (tasks stream sequence {task_seq})" if task_seq is not None else ""
    log.error("gave up dead-lettering %s%s: %s", subject, where, error)
    await mesh.emit(
        audit_workflow(mesh, envelope),
        ev.Event(
            kind=DEAD_LETTER_FAILED,
            agent=mesh.name,
            at=time.time(),
            instance=mesh.instance,
            task=envelope.id if envelope else None,
            parent=envelope.parent if envelope else None,
            step=envelope.step if envelope else "",
            reason=reason,
            detail=f"{subject}{where}: not dead-lettered: {error}"[:1024],
            message=message,
            seq=task_seq,
        ),
        caller=caller,
    )
