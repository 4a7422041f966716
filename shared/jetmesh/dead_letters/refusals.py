"""Refusals: what happens to a message that is turned away or a task given up on.

A refused message is dead-lettered on ``<prefix>.dlq.<agent>`` with its reason and audited
as a ``rejected`` event; a failed task's caller gets an error reply instead of a timeout.

A dead letter that cannot be stored (the dead-letter stream refuses it or does not answer)
is tried again with the delivery's backoff, at most ``max_deliver`` times in all; then the
message is given up on and a ``dead-letter-failed`` event says so, with the error and,
when known, the task's sequence in the tasks stream (where the admin can still read it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from .. import events as ev
from .._exceptions import PublishFailed, RejectedMessage
from ..envelope import Envelope, ErrorBody
from ..mesh_protocols import EventWriting, Member, Sending, Storing
from .headers import dead_letter_headers

log = logging.getLogger("jetmesh.refusals")


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


async def reject(
    mesh: DeadLettering,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    exc: RejectedMessage,
    *,
    last_try: bool = True,
    task_seq: int | None = None,
) -> None:
    """Dead-letter a refused message with its reason and audit it as an event.

    Args:
        last_try: when the dead letter cannot be stored, give up (a ``rejected`` and a
            ``dead-letter-failed`` event) instead of raising; a message that is not
            redelivered (a reply) is always on its last try.
        task_seq: the message's sequence in the tasks stream, named if it is given up on.

    Raises:
        PublishFailed: the dead letter was not stored and this is not the last try (the
            caller sends the message back, to be refused again after a backoff).
    """
    envelope: Envelope | None = getattr(exc, "envelope", None)
    log.warning("rejected message on %s: %s", subject, exc)
    failure: PublishFailed | None = None
    try:
        await dead_letter(mesh, subject, data, headers, exc.reason, exc.detail)
    except PublishFailed as dl_exc:
        if not last_try:
            raise
        failure = dl_exc
    workflow = audit_workflow(mesh, envelope)
    await mesh.emit(
        workflow,
        ev.Event(
            kind=ev.REJECTED,
            agent=mesh.name,
            at=time.time(),
            instance=mesh.instance,
            task=envelope.id if envelope else None,
            parent=envelope.parent if envelope else None,
            step=envelope.step if envelope else "",
            type=envelope.type if envelope else "",
            reason=exc.reason,
            detail=f"{subject}: {exc.detail}"[:1024],
        ),
        caller="",
    )
    if failure is not None:
        await dead_letter_failed(
            mesh, subject, envelope, exc.reason, failure, task_seq=task_seq, caller=""
        )


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


async def dead_letter_failed(
    mesh: EventWriting,
    subject: str,
    envelope: Envelope | None,
    reason: str,
    error: Exception,
    *,
    task_seq: int | None = None,
    caller: str = "",
) -> None:
    """Write the ``dead-letter-failed`` event of a message given up on without a dead
    letter (in its workflow when its envelope was read, else in ``_unverified``)."""
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
        ),
        caller=caller,
    )


async def error_reply(
    mesh: Sending, task: Envelope, error: ErrorBody, *, caller: str | None = None
) -> None:
    """Tell the caller of ``task`` that it failed.

    Args:
        mesh: the client that answers.
        task: the task that failed.
        error: what went wrong.
        caller: the caller token the reply carries: the task's by default, ``""`` when
            the task's token was itself refused.
    """
    if not task.reply_to:
        return
    reply = mesh.envelope(
        kind="error",
        workflow=task.workflow,
        to=task.sender,
        body=error,
        caller=task.caller if caller is None else caller,
        parent=task.id,
        step=task.step,
    )
    await mesh.send_reply(reply, task.reply_to)
