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
from typing import Any, Protocol

import msgspec
from nats.aio.msg import Msg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import events as ev
from .._exceptions import (
    HandlerControl,
    InvalidToken,
    MemoryDenied,
    PublishFailed,
    RejectedMessage,
    Retry,
    ScopeDenied,
    ToolRefused,
)
from ..bus.delivery import delivery_of
from ..bus.streams import ADVISORIES_MAX_AGE_S
from ..dead_letters import (
    UNVERIFIED_WORKFLOW,
    DeadLettering,
    dead_letter,
    dead_letter_failed,
    error_reply,
    refused_message_id,
    reject,
)
from ..envelope import Envelope, ErrorBody, encode
from ..identity.tokens import Caller
from ..memory import keys
from ..mesh_protocols import Sending, Verifying
from ..settings import MeshSettings
from ..telemetry import metrics, traces
from .context import Context
from .last_delivery import KeptTask, LastDeliveries
from .ledger import Recorded, StepLedger
from .limits import TOKEN_REFUSALS

log = logging.getLogger("jetmesh.runtime")

MAX_DELIVERIES = "max-deliveries"
"""The reason of a task that ran out of deliveries."""


class _MaxDeliveries(msgspec.Struct):
    """The JetStream advisory sent when a message reaches the consumer's max deliveries."""

    stream_seq: int
    deliveries: int = 0


class GivingUp(DeadLettering, Sending, Verifying, Protocol):
    """What a replica's failure paths take: dead letters and events, error replies, kept
    tasks verified again, and Redis (the kept tasks, :mod:`.last_delivery`)."""

    @property
    def redis(self) -> Redis: ...


class Failures:
    """The failure paths of one replica of ``agent``."""

    def __init__(
        self, mesh: GivingUp, settings: MeshSettings, agent: str, ledger: StepLedger | None
    ) -> None:
        self.mesh = mesh
        self.settings = settings
        self.agent = agent
        self.ledger = ledger
        self._last: LastDeliveries | None = None

    @property
    def last(self) -> LastDeliveries:
        """The tasks this role keeps on their last delivery (:mod:`.last_delivery`), for
        as long as the advisories stream keeps an advisory."""
        if self._last is None:
            self._last = LastDeliveries(
                self.mesh.redis,
                self.settings.subject_prefix,
                self.agent,
                ttl_s=ADVISORIES_MAX_AGE_S,
            )
        return self._last

    def last_try(self, msg: Msg) -> bool:
        """Whether ``msg`` is its task's last delivery (a dead letter that cannot be stored
        now is given up on, not sent back)."""
        return delivery_of(msg.reply).attempt >= self.settings.max_deliver

    async def on_max_deliveries(self, advisory: Msg) -> None:
        """A task ran out of deliveries without a handler failing cleanly (its replica
        crashed or stalled past AckWait each time): dead-letter it, answer its caller with
        an error and write its ``failed`` event, so it is kept with its reason instead of
        sitting unacknowledged for ever.

        The task is the one the replica of its last delivery kept (:mod:`.last_delivery`);
        when none was kept (a crash before, Redis lost it), the dead letter is a record
        naming the task's stream sequence, and a ``failed`` event in ``_unverified`` says
        so (the admin reads the task from the tasks stream: ``jetmesh dlq show``). The
        advisory is acked once that is done (a crash before: another replica does it; the
        dead letter's id makes a second one a duplicate the stream drops). A dead letter
        that cannot be stored is tried again with backoff, ``max_deliver`` times in all,
        then given up on with a ``dead-letter-failed`` event."""
        try:
            info = msgspec.json.decode(advisory.data, type=_MaxDeliveries)
        except msgspec.DecodeError as exc:
            log.error("unreadable max-deliveries advisory dropped: %s", exc)
            await advisory.term()
            return
        attempt = delivery_of(advisory.reply).attempt
        last = attempt >= self.settings.max_deliver
        seq = info.stream_seq
        try:
            kept = await self.last.read(seq)
        except RedisError as exc:
            if not last:
                log.error("max-deliveries advisory of seq %d waits for Redis: %s", seq, exc)
                await advisory.nak(delay=self.settings.backoff_for(attempt))
                return
            kept = None
        detail = f"delivered {info.deliveries} times without an ack (crash or AckWait)"
        if kept is None:
            detail += f"; the task (tasks stream sequence {seq}) was not kept by its replica"
            kept = KeptTask(self.mesh.subjects.task(self.agent), b"", {}, 0.0)
        try:
            await dead_letter(
                self.mesh,
                kept.subject,
                kept.data,
                kept.headers,
                MAX_DELIVERIES,
                detail,
                task_seq=seq,
            )
        except PublishFailed as exc:
            if not last:
                log.error("could not dead-letter task seq %d yet: %s", seq, exc)
                await advisory.nak(delay=self.settings.backoff_for(attempt))
                return
            task = await self._verified(kept)
            caller = task.caller if task is not None else ""
            await dead_letter_failed(
                self.mesh,
                kept.subject,
                task,
                MAX_DELIVERIES,
                exc,
                task_seq=seq,
                caller=caller,
                message=refused_message_id(kept.headers),
            )
            await advisory.term()
            return
        traces.gave_up(kept.subject, kept.headers, self.agent, MAX_DELIVERIES, detail)
        await self._out_of_deliveries(kept, seq, info.deliveries, detail)
        await advisory.ack()
        if kept.data:
            await self.last.forget(seq)

    async def _out_of_deliveries(
        self, kept: KeptTask, seq: int, deliveries: int, detail: str
    ) -> None:
        """Once a task out of deliveries is dead-lettered: answer its caller, write its
        ``failed`` event (in ``_unverified`` when its bytes were not kept: its workflow is
        not known here, so the event names the task by its tasks stream sequence, ``seq``;
        its ``Nats-Msg-Id`` is not known either, and ``message`` stays empty)."""
        if not kept.data:
            log.error("task seq %d ran out of deliveries and was not kept", seq)
            await self.mesh.emit(
                UNVERIFIED_WORKFLOW,
                ev.Event(
                    kind=ev.FAILED,
                    agent=self.agent,
                    at=time.time(),
                    instance=self.mesh.instance,
                    reason=MAX_DELIVERIES,
                    detail=f"{kept.subject}: {detail}; read it with `jetmesh dlq show`"[:1024],
                    seq=seq,
                ),
                caller="",
            )
            return
        task = await self._verified(kept)
        if task is None:
            return
        with contextlib.suppress(Exception):
            await error_reply(self.mesh, task, ErrorBody("TaskFailed", detail, MAX_DELIVERIES))
        await self.record_failure(task, deliveries, MAX_DELIVERIES, detail)

    async def _verified(self, kept: KeptTask) -> Envelope | None:
        """The kept task's envelope if it verifies as it did when delivered (the caller of
        a task that does not is not answered, nor its workflow written to)."""
        if not kept.data:
            return None
        try:
            verified = await self.mesh.verify(kept, stored_at=kept.stored_at)
        except RejectedMessage as exc:
            log.warning("kept task on %s does not verify: %s", kept.subject, exc)
            return None
        return verified.envelope if verified.envelope.kind == "task" else None

    async def refuse(self, msg: Msg, exc: RejectedMessage) -> None:
        """Dead-letter and audit a refused task, then terminate its delivery. A dead letter
        that cannot be stored sends the task back with the delivery's backoff; on its last
        delivery it is given up on with a ``dead-letter-failed`` event."""
        traces.failed("refused", exc.reason, exc.detail)
        delivery = delivery_of(msg.reply)
        last = delivery.attempt >= self.settings.max_deliver
        try:
            await reject(
                self.mesh,
                msg.subject,
                msg.data,
                msg.headers,
                exc,
                last_try=last,
                task_seq=delivery.stream_seq,
            )
        except Exception as dl_exc:  # nothing is lost: try again later
            log.error("could not dead-letter %s: %s", msg.subject, dl_exc)
            await msg.nak(delay=self.settings.backoff_for(delivery.attempt))
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
        metrics.refused(self.agent, exc.reason)
        metrics.ended(metrics.REFUSED)

    async def after_failure(self, msg: Msg, ctx: Context, exc: Exception, attempt: int) -> None:
        task = ctx.task
        reason = exc.reason if isinstance(exc, Retry) else type(exc).__name__
        if attempt >= self.settings.max_deliver:
            await self.finish_failed(
                msg,
                task,
                ctx.caller,
                attempt,
                MAX_DELIVERIES,
                f"{reason}: {exc}",
                error_type=type(exc).__name__,
            )
            return
        delay = exc.delay if isinstance(exc, Retry) else self.settings.backoff_for(attempt)
        if not isinstance(exc, HandlerControl):
            ctx.log.warning("handler failed (attempt %d): %r", attempt, exc)
        traces.failed("retry", reason, str(exc), **{"jetmesh.retry.delay_s": delay})
        await ctx.emit_event(ev.RETRIED, reason=reason, detail=str(exc)[:1024])
        await msg.nak(delay=delay)
        metrics.ended(metrics.RETRIED)

    async def denied(
        self, msg: Msg, ctx: Context, exc: ScopeDenied | ToolRefused | MemoryDenied, attempt: int
    ) -> None:
        """Fail a task refused by the policy for good (no retry: the same would be refused
        again). A scope or a tool refusal was audited where it happened; Redis's refusal of
        a key is audited here, as a ``denied`` event."""
        traces.failed("denied", exc.reason, exc.detail)
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
            outcome=metrics.DENIED,
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
        outcome: str | None = None,
    ) -> None:
        """Dead-letter, answer with the error, terminate delivery, write ``failed``.

        With ``record``, the error becomes the step's result: a duplicate of the step gets
        the same answer instead of running the handler again. A dead letter that cannot be
        stored sends the task back with the delivery's backoff; on its last delivery the
        task is given up on all the same, with a ``dead-letter-failed`` event. ``outcome``
        is the delivery's in the metrics (by default ``dead-lettered`` when out of
        deliveries, else ``failed``).
        """
        traces.failed("dead_letter", reason, detail)
        seq = delivery_of(msg.reply).stream_seq
        try:
            await dead_letter(
                self.mesh, msg.subject, msg.data, msg.headers, reason, detail, task_seq=seq
            )
        except PublishFailed as exc:
            if not self.last_try(msg):
                log.error("could not dead-letter %s: %s", task.id, exc)
                await msg.nak(delay=self.settings.backoff_for(attempt))
                return
            await dead_letter_failed(
                self.mesh,
                msg.subject,
                task,
                reason,
                exc,
                task_seq=seq,
                caller=task.caller,
                message=refused_message_id(msg.headers),
            )
        error = ErrorBody(error_type, detail, reason)
        if record and self.ledger is not None:
            step = keys.ledger_step(task.step, task.id)
            recorded = Recorded(
                kind="error", type="mesh.ErrorBody/1", body=msgspec.Raw(encode(error))
            )
            with contextlib.suppress(Exception):
                await self.ledger.finish(task.workflow, self.agent, step, recorded)
        # A caller token refused on the way (a callee's check, the tool gateway's second
        # one) cannot vouch for the answer either (its sender would refuse it too): the
        # error acts for no caller, as a refused task's does (refuse).
        refused = reason in TOKEN_REFUSALS
        acting_for = "" if refused else None
        await error_reply(self.mesh, task, error, caller=acting_for)
        await self.record_failure(
            task,
            attempt,
            reason,
            detail,
            caller="" if refused else caller.subject,
            acting_for=acting_for,
        )
        await msg.term()
        metrics.ended(
            outcome or (metrics.DEAD_LETTERED if reason == MAX_DELIVERIES else metrics.FAILED)
        )

    async def record_failure(
        self,
        task: Envelope,
        attempt: int,
        reason: str,
        detail: str,
        *,
        caller: str = "",
        acting_for: str | None = None,
    ) -> None:
        """The ``failed`` event of a task given up on, stored before its delivery is
        terminated (:mod:`jetmesh.runtime.replica`); ``acting_for`` as
        :meth:`task_event`'s (``""`` when the task's caller token is why: the event would
        not verify in the log carrying it)."""
        await self.task_event(
            task,
            ev.FAILED,
            stored=True,
            acting_for=acting_for,
            caller=caller,
            attempt=attempt,
            reason=reason,
            detail=detail[:1024],
        )

    async def task_event(
        self,
        task: Envelope,
        kind: str,
        *,
        stored: bool = False,
        acting_for: str | None = None,
        **fields: Any,
    ) -> None:
        """An event about ``task`` written by this replica outside a handler's context
        (``stored``: see :meth:`jetmesh.client.MeshClient.emit`), for the task's caller
        token, or ``acting_for`` (``""``: none)."""
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
        token = task.caller if acting_for is None else acting_for
        await self.mesh.emit(task.workflow, event, caller=token, parent=task.id, stored=stored)
