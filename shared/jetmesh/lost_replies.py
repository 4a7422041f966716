"""A reply lost on the way is read back from the workflow's log.

A reply is a core NATS message to the caller's inbox: it is not stored, and one in flight
when a nats-server dies (a cluster node, or the only server) is gone. The callee has done
the step all the same, recorded its result and written a signed ``completed`` event with
the reply's body (``failed``, with the reason, for an error) before it acknowledged the
task. A caller still waiting after ``settings.reply_lost_after_s`` reads the log for the
event of the task it sent, and takes it as the reply when the callee's own key signed it
for that task, workflow and step (the trust rule: the verified signer, never a field
naming a role). A short call is never affected; a long one (a step waiting hours for a
person's approval) goes on instead of waiting out its deadline for a reply that cannot
come.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal, Protocol

import msgspec

from . import events as ev
from ._exceptions import RejectedMessage
from .bus.direct import MessageStore, read_from
from .envelope import Envelope, ErrorBody, decode_body, encode, new_id, type_name
from .mesh_protocols import Member, Verifying

__all__ = ["ReplyReading", "await_reply", "recorded_reply"]

log = logging.getLogger(__name__)

ERROR_TYPE = type_name(ErrorBody)


class ReplyReading(Member, Verifying, MessageStore, Protocol):
    """What reading a reply back takes: the workflow's log read and verified."""


async def recorded_reply(mesh: ReplyReading, task: Envelope) -> Envelope | None:
    """The reply to ``task`` as its callee recorded it in the log (``completed``: its
    body; ``failed``: an error), or None when the log has none yet, or only one the callee
    did not sign for that task, or one whose body was left out for its size."""
    for kind in (ev.COMPLETED, ev.FAILED):
        subject = mesh.subjects.event(task.workflow, kind)
        async for stored in read_from(mesh, mesh.settings.events_stream, subject):
            try:
                verified = await mesh.verify(stored, stored_at=stored.stored_at)
                event = decode_body(verified.envelope, ev.Event)
            except (RejectedMessage, msgspec.DecodeError, msgspec.ValidationError):
                continue
            if (
                verified.certificate.name != task.to
                or event.task != task.id
                or event.step != task.step
                or verified.envelope.workflow != task.workflow
            ):
                continue
            reply = _as_reply(task, event)
            if reply is not None:
                return reply
    return None


async def await_reply(
    mesh: ReplyReading, task: Envelope, future: asyncio.Future[Envelope]
) -> Envelope:
    """The reply to ``task`` from ``future``; once none came for ``reply_lost_after_s``,
    also looked for in the log (:func:`recorded_reply`), again every
    ``reply_lost_after_s`` until the caller's deadline cancels the wait. The looking is a
    timer beside the wait, started only for a call still waiting then (most end long
    before)."""
    loop = asyncio.get_running_loop()
    looking: list[asyncio.Task[None]] = []
    timer = loop.call_later(
        mesh.settings.reply_lost_after_s,
        lambda: looking.append(loop.create_task(_read_back(mesh, task, future))),
    )
    try:
        return await future
    finally:
        timer.cancel()
        for reader in looking:
            reader.cancel()


async def _read_back(mesh: ReplyReading, task: Envelope, future: asyncio.Future[Envelope]) -> None:
    """Read the reply to ``task`` from the log into ``future`` (an error reading it too),
    every ``reply_lost_after_s`` until it is there or ``future`` is done."""
    every = mesh.settings.reply_lost_after_s
    while not future.done():
        try:
            recorded = await recorded_reply(mesh, task)
        except Exception as exc:  # the caller's, as when it read the log itself
            if not future.done():
                future.set_exception(exc)
            return
        if recorded is not None:
            if not future.done():
                log.warning(
                    "no reply from %s to task %s in %.0f s: its recorded answer is read "
                    "from the log (a reply lost with its server)",
                    task.to,
                    task.id,
                    every,
                )
                future.set_result(recorded)
            return
        await asyncio.sleep(every)


def _as_reply(task: Envelope, event: ev.Event) -> Envelope | None:
    if event.kind == ev.COMPLETED:
        if event.body is None or event.body.omitted:
            return None
        type_, body = event.body.type, event.body.value
        kind: Literal["reply", "error"] = "error" if type_ == ERROR_TYPE else "reply"
    else:
        error = ErrorBody("TaskFailed", event.detail, event.reason or "failed")
        kind, type_, body = "error", ERROR_TYPE, msgspec.Raw(encode(error))
    return Envelope(
        id=new_id(),
        kind=kind,
        workflow=task.workflow,
        sender=task.to,
        to=task.sender,
        created=event.at,
        type=type_,
        parent=task.id,
        step=task.step,
        body=body,
    )
