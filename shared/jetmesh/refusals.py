"""Refusals: what happens to a message that is turned away or a task given up on.

A refused message is dead-lettered on ``<prefix>.dlq.<agent>`` with its reason and audited
as a ``rejected`` event; a failed task's caller gets an error reply instead of a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import events as ev
from ._exceptions import RejectedMessage
from .dead_letters import dead_letter_headers
from .envelope import Envelope, ErrorBody

if TYPE_CHECKING:
    from .client import MeshClient

log = logging.getLogger("jetmesh.refusals")

DEAD_LETTER_TIMEOUT_S = 5.0

UNVERIFIED_WORKFLOW = "_unverified"
"""Workflow under which rejects are audited when the sender's envelope could not be read."""


async def reject(
    mesh: MeshClient,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    exc: RejectedMessage,
) -> None:
    """Dead-letter a refused message with its reason and audit it as an event."""
    envelope: Envelope | None = getattr(exc, "envelope", None)
    log.warning("rejected message on %s: %s", subject, exc)
    await dead_letter(mesh, subject, data, headers, exc.reason, exc.detail)
    workflow = envelope.workflow if envelope is not None else UNVERIFIED_WORKFLOW
    try:
        mesh.subjects.event(workflow, ev.REJECTED)
    except ValueError:
        workflow = UNVERIFIED_WORKFLOW
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


async def dead_letter(
    mesh: MeshClient,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    reason: str,
    detail: str,
) -> None:
    """Store a message on ``mesh``'s agent's dead-letter subject with the reason."""
    dl_headers = dead_letter_headers(
        headers, subject=subject, data=data, agent=mesh.name, reason=reason, detail=detail
    )
    async with asyncio.timeout(DEAD_LETTER_TIMEOUT_S):
        await mesh.publisher.publish(mesh.subjects.dlq(mesh.name), data, dl_headers)


async def error_reply(
    mesh: MeshClient, task: Envelope, error: ErrorBody, *, caller: str | None = None
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
