"""How a replica gives up on a task: refusals, retries, dead letters and ``failed`` events.

Every way a task ends other than with its handler's result goes through here, so that each
is recorded the same way: a dead letter with its reason (``MESH_DLQ``), an error reply to
the caller, an event in the workflow's log, and the step's result in the ledger where a
duplicate must get the same answer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from .. import events as ev
from .._exceptions import (
    HandlerControl,
    InvalidToken,
    MemoryDenied,
    RejectedMessage,
    Retry,
    ScopeDenied,
    ToolRefused,
)
from ..client import MeshClient
from ..envelope import Envelope, ErrorBody, decode_envelope, encode
from ..identity.tokens import Caller
from ..refusals import dead_letter, error_reply, reject
from ..settings import MeshSettings
from .context import Context
from .ledger import Recorded, StepLedger

log = logging.getLogger("jetmesh.runtime")


class _MaxDeliveries(msgspec.Struct):
    """The JetStream advisory sent when a message reaches the consumer's max deliveries."""

    stream_seq: int
    deliveries: int = 0


class Failures:
    """The failure paths of one replica of ``agent``."""

    def __init__(
        self, mesh: MeshClient, settings: MeshSettings, agent: str, ledger: StepLedger | None
    ) -> None:
        self.mesh = mesh
        self.settings = settings
        self.agent = agent
        self.ledger = ledger

    async def on_max_deliveries(self, advisory: Msg) -> None:
        """A task ran out of deliveries without a handler failing cleanly (its replica
        crashed or stalled past AckWait each time): dead-letter it from the stream, so
        it is kept with its reason instead of sitting unacknowledged for ever. The
        advisory is acked once that is done (a crash before: another replica does it;
        the dead letter's id makes a second one a duplicate the stream drops)."""
        try:
            info = msgspec.json.decode(advisory.data, type=_MaxDeliveries)
        except msgspec.DecodeError as exc:
            log.error("unreadable max-deliveries advisory dropped: %s", exc)
            await advisory.term()
            return
        try:
            stored = await self.mesh.js.get_msg(self.settings.tasks_stream, info.stream_seq)
        except NotFoundError:  # the task is gone from the stream (its age limit)
            await advisory.ack()
            return
        except Exception as exc:
            log.error("max-deliveries advisory not handled yet: %s", exc)
            await advisory.nak(delay=self.settings.backoff_for(1))
            return
        data = stored.data or b""
        headers = dict(stored.headers or {})
        detail = f"delivered {info.deliveries} times without an ack (crash or AckWait)"
        try:
            await dead_letter(
                self.mesh, stored.subject or "", data, headers, "max-deliveries", detail
            )
        except Exception as exc:
            log.error("could not dead-letter task seq %d: %s", info.stream_seq, exc)
            await advisory.nak(delay=self.settings.backoff_for(1))
            return
        await advisory.ack()
        try:
            task = decode_envelope(data)
        except RejectedMessage:
            return
        await self.record_failure(task, info.deliveries, "max-deliveries", detail)

    async def refuse(self, msg: Msg, exc: RejectedMessage) -> None:
        """Dead-letter and audit a refused task, then terminate its delivery."""
        try:
            await reject(self.mesh, msg.subject, msg.data, msg.headers, exc)
        except Exception as dl_exc:  # nothing is lost: try again later
            log.error("could not dead-letter %s: %s", msg.subject, dl_exc)
            await msg.nak(delay=self.settings.backoff_for(1))
            return
        envelope = getattr(exc, "envelope", None)
        if envelope is not None and envelope.kind == "task":
            # A refused caller token cannot vouch for the answer (the caller would refuse
            # it too), so that error reply acts for no caller, like the audit event.
            caller = "" if isinstance(exc, InvalidToken) else None
            with contextlib.suppress(Exception):
                await error_reply(
                    self.mesh,
                    envelope,
                    ErrorBody(type(exc).__name__, exc.detail, exc.reason),
                    caller=caller,
                )
        await msg.term()

    async def after_failure(self, msg: Msg, ctx: Context, exc: Exception, attempt: int) -> None:
        task = ctx.task
        reason = exc.reason if isinstance(exc, Retry) else type(exc).__name__
        if attempt >= self.settings.max_deliver:
            await self.finish_failed(
                msg,
                task,
                ctx.caller,
                attempt,
                "max-deliveries",
                f"{reason}: {exc}",
                error_type=type(exc).__name__,
            )
            return
        delay = exc.delay if isinstance(exc, Retry) else self.settings.backoff_for(attempt)
        if not isinstance(exc, HandlerControl):
            ctx.log.warning("handler failed (attempt %d): %r", attempt, exc)
        await msg.nak(delay=delay)
        await ctx.emit_event(ev.RETRIED, reason=reason, detail=str(exc)[:1024])

    async def denied(
        self, msg: Msg, ctx: Context, exc: ScopeDenied | ToolRefused | MemoryDenied, attempt: int
    ) -> None:
        """Fail a task refused by the policy for good (no retry: the same would be refused
        again). A scope or a tool refusal was audited where it happened; Redis's refusal of
        a key is audited here, as a ``denied`` event."""
        if isinstance(exc, MemoryDenied):
            with contextlib.suppress(Exception):
                await ctx.emit_event(
                    ev.DENIED, reason=exc.reason, key=exc.key, target="memory", detail=exc.detail
                )
        await self.finish_failed(
            msg,
            ctx.task,
            ctx.caller,
            attempt,
            exc.reason,
            exc.detail,
            error_type=type(exc).__name__,
        )

    async def finish_failed(
        self,
        msg: Msg,
        task: Envelope,
        caller: Caller,
        attempt: int,
        reason: str,
        detail: str,
        *,
        error_type: str = "TaskFailed",
        record: bool = True,
    ) -> None:
        """Dead-letter, answer with the error, terminate delivery, write ``failed``.

        With ``record``, the error becomes the step's result: a duplicate of the step gets
        the same answer instead of running the handler again.
        """
        try:
            await dead_letter(self.mesh, msg.subject, msg.data, msg.headers, reason, detail)
        except Exception as exc:
            log.error("could not dead-letter %s: %s", task.id, exc)
            await msg.nak(delay=self.settings.backoff_for(attempt))
            return
        error = ErrorBody(error_type, detail, reason)
        if record and self.ledger is not None:
            step = task.step or f"id:{task.id}"
            recorded = Recorded(
                kind="error", type="mesh.ErrorBody/1", body=msgspec.Raw(encode(error))
            )
            with contextlib.suppress(Exception):
                await self.ledger.finish(task.workflow, self.agent, step, recorded)
        await error_reply(self.mesh, task, error)
        await msg.term()
        await self.record_failure(task, attempt, reason, detail, caller=caller.subject)

    async def record_failure(
        self, task: Envelope, attempt: int, reason: str, detail: str, *, caller: str = ""
    ) -> None:
        """The ``failed`` event of a task given up on."""
        await self.task_event(
            task, ev.FAILED, caller=caller, attempt=attempt, reason=reason, detail=detail[:1024]
        )

    async def task_event(self, task: Envelope, kind: str, **fields: Any) -> None:
        """An event about ``task`` written by this replica outside a handler's context."""
        event = ev.Event(
            kind=kind,
            agent=self.agent,
            at=time.time(),
            instance=self.mesh.instance,
            task=task.id,
            parent=task.parent,
            step=task.step,
            **fields,
        )
        await self.mesh.emit(task.workflow, event, caller=task.caller, parent=task.id)
