"""Refusals: what happens to a message that is turned away or a task given up on.

A refused message is dead-lettered (:mod:`.publishing`) with its reason and audited as a
``rejected`` event; a failed task's caller gets an error reply instead of a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from .. import events as ev
from .._exceptions import PublishFailed, RejectedMessage
from ..envelope import Envelope, ErrorBody
from ..mesh_protocols import Sending
from .headers import refused_message_id
from .publishing import DeadLettering, audit_workflow, dead_letter, dead_letter_failed

log = logging.getLogger("jetmesh.refusals")


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
    """Dead-letter a refused message with its reason and audit it as a ``rejected`` event
    that names it as its sender can: its ``Nats-Msg-Id`` (``message``) and, for a task,
    its sequence in the tasks stream (``seq``).

    Args:
        last_try: when the dead letter cannot be stored, give up (a ``rejected`` and a
            ``dead-letter-failed`` event) instead of raising; a message that is not
            redelivered (a reply) is always on its last try.
        task_seq: the message's sequence in the tasks stream, when it came from there.

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
    message = refused_message_id(headers)
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
            message=message,
            seq=task_seq,
        ),
        caller="",
    )
    if failure is not None:
        await dead_letter_failed(
            mesh,
            subject,
            envelope,
            exc.reason,
            failure,
            task_seq=task_seq,
            caller="",
            message=message,
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
