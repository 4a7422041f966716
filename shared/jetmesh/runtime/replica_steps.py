"""A delivery's step in the step ledger, as a replica handles it.

Before the handler runs, the delivery claims its step (:mod:`jetmesh.runtime.step_leases`):
a step with a recorded result is answered again from the record and the handler does not
run; a step running under another delivery's lease is waited for; then the deadline rule
refuses only a step nobody started (:mod:`jetmesh.runtime.deadline`). After the handler, the
result is recorded before it is answered, and the lease is released when the delivery gives
up on the step without a result. A step answered from the record is acked, like any other,
once its ``completed`` event is stored (see :mod:`jetmesh.runtime.replica`).

:class:`ReplicaSteps` is a base class of :class:`~jetmesh.runtime.replica.Replica`, which
supplies the attributes it declares.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.aio.msg import Msg

from .. import events as ev
from ..client import MeshClient
from ..envelope import Envelope
from ..identity.tokens import Caller
from ..settings import MeshSettings
from ..telemetry import metrics, traces
from .agent import Agent
from .deadline import DEADLINE_PASSED, deadline_refusal
from .failures import Failures
from .ledger import UNAVAILABLE, CarriedEvent, Recorded, StepLedger
from .step_leases import StepLeases

log = logging.getLogger("jetmesh.runtime")


@dataclass(frozen=True)
class StepRun:
    """How a delivery's handler runs, from its claim of the step."""

    started: bool = False
    """The step was running under another delivery's lease, which this one waited out."""
    journal_empty: bool = True
    """The step's first claim ever (or no step ledger: no journal): nothing of it is
    journaled, so its calls and model calls are not looked up in the journal (a round trip
    each saved)."""

    @property
    def begun(self) -> bool:
        """Another delivery began the step before this one: it took over a live lease, or
        an earlier claim began it (another task sent for the step, whose delivery died).
        The deadline rule's "started"."""
        return self.started or not self.journal_empty


class ReplicaSteps:
    """Claim, record, release and answer again a delivery's step (the replica's part)."""

    agent: Agent
    settings: MeshSettings
    mesh: MeshClient
    ledger: StepLedger | None
    leases: StepLeases | None
    failures: Failures
    failed: int
    _free_slot: Callable[[], None]

    async def _begin(
        self, msg: Msg, task: Envelope, caller: Caller, attempt: int, step: str, holder: str
    ) -> StepRun | None:
        """How the handler is to run, or None when it is not to: the ledger first (a step
        with a recorded result is answered from it, whatever the deadline), then the
        deadline rule, which refuses only a step nobody started
        (:mod:`jetmesh.runtime.deadline`)."""
        run = StepRun()
        if self.ledger is not None:
            taken = await self._take_step(msg, task, caller, attempt, step, holder)
            if taken is None:
                return None
            run = taken
        late = deadline_refusal(
            deadline=task.deadline, attempt=attempt, started=run.begun, now=time.time()
        )
        if late is None:
            return run
        # nobody started it, nobody waits for it: its first claim is taken back, mark and all
        await self._release(task, step, holder, unmark=run.journal_empty)
        self.failed += 1
        await self.failures.finish_failed(
            msg, task, caller, attempt, DEADLINE_PASSED, late, record=False
        )
        return None

    async def _take_step(
        self, msg: Msg, task: Envelope, caller: Caller, attempt: int, step: str, holder: str
    ) -> StepRun | None:
        """Claim the step in the ledger. None when this delivery is dealt with already (the
        step had a result, answered again; or the ledger is unreachable, sent back); else
        how the step runs: started by another delivery whose lease it waited out, or
        claimed for the first time."""
        try:
            assert self.leases is not None
            recorded, started, first = await self.leases.claim(task.workflow, step, holder)
        except asyncio.CancelledError:  # drained while waiting for a duplicate
            await msg.nak()
            raise
        except UNAVAILABLE as exc:  # unreachable for longer than redis_retry_s, full, ...
            log.error("step ledger unavailable, task %s goes back: %s", task.id, exc)
            await msg.nak(delay=self.settings.backoff_for(attempt))
            return None
        if recorded is not None:
            await self._answer_again(msg, task, caller, attempt, recorded)
            return None
        return StepRun(started=started, journal_empty=first)

    async def _record(
        self, msg: Msg, task: Envelope, attempt: int, step: str, holder: str, recorded: Recorded
    ) -> bool:
        """Store the step's result before it is answered and acked; False (and the task
        sent back to run again) when the ledger is unreachable."""
        assert self.ledger is not None
        try:
            await self.ledger.finish(task.workflow, self.agent.name, step, recorded)
        except UNAVAILABLE as exc:
            log.error("step result of %s not recorded, task goes back: %s", task.id, exc)
            await self._release(task, step, holder)
            await msg.nak(delay=self.settings.backoff_for(attempt))
            return False
        return True

    async def _release(
        self, task: Envelope, step: str, holder: str, *, unmark: bool = False
    ) -> None:
        if self.leases is not None:
            await self.leases.release(task.workflow, step, holder, unmark=unmark)

    async def _send_again(self, task: Envelope, events: Sequence[CarriedEvent]) -> None:
        """Publish the carried events again, as they were; those carried longer ago than
        ``max_message_age_s`` are not (no longer known to the stream for duplicates)."""
        now = time.time()
        for event in events:
            if now - event.at > self.settings.max_message_age_s:
                log.warning(
                    "task %s: event %s of its recorded run not sent again: carried %.0f s ago",
                    task.id,
                    event.id,
                    now - event.at,
                )
                continue
            await self.mesh.publisher.publish_later(
                event.id, event.subject, bytes(event.data), event.headers
            )

    async def _reply(self, task: Envelope, recorded: Recorded) -> None:
        if not task.reply_to:
            return
        reply = self.mesh.envelope(
            kind="error" if recorded.kind == "error" else "reply",
            workflow=task.workflow,
            to=task.sender,
            body=recorded.body,
            caller=task.caller,
            parent=task.id,
            step=task.step,
            type_=recorded.type,
        )
        await self.mesh.send_reply(reply, task.reply_to)

    async def _answer_again(
        self, msg: Msg, task: Envelope, caller: Caller, attempt: int, recorded: Recorded
    ) -> None:
        """A step already done: send its recorded reply, do not run the handler again; the
        events its run had not stored when it was recorded go again (same ids: the stream
        keeps one copy)."""
        traces.annotate({traces.FROM_RECORD: True})
        await self._reply(task, recorded)
        self._free_slot()
        await self._send_again(task, recorded.events)
        await self.failures.task_event(
            task,
            ev.COMPLETED,
            caller=caller.subject,
            attempt=attempt,
            type=task.type,
            duration_ms=0.0,
            reason=ev.FROM_LEDGER,
            detail=f"-> {recorded.type} (step already done: recorded result sent again)",
            body=ev.EventPayload(type=recorded.type, value=recorded.body),
            stored=True,
        )
        await msg.ack()
        metrics.ended(metrics.COMPLETED)
