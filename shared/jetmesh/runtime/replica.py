"""A running replica of an agent: fetch, verify, handle, reply, acknowledge.

Lifecycle: ``start()`` connects and declares the role's consumer (or, connected as the role
on servers that enforce the policy, binds to the one the admin made), then fetches tasks;
``drain()`` stops fetching, lets in-flight tasks finish within ``drain_timeout_s``, naks
what is left (so another replica takes it at once), flushes events and closes. Both are
idempotent. Signals are the caller's business (see ``jetmesh run``).

A delivery is acked or terminated once the event that says how it ended (``completed``,
``failed``) is stored, so a replica killed in between leaves the task unsettled (it is
delivered again and logs its end again, from the ledger) rather than settled with no end
in the log. Being sent first is not enough: events go through the group commit's queue
(:mod:`jetmesh.bus.group_commit`) and may leave after an ack sent straight to the socket.
Likewise, the events a run wrote along the way (its calls, model calls, effects, tool
runs, refusals) must not die with a replica killed after its end is recorded in the
ledger: the task is then answered for from the record, and the handler does not run again
to write them. A result's record carries those of its run's events not yet stored (as
published, signed), and a delivery answered from the record sends them again with their
``Nats-Msg-Id`` (the stream keeps one copy); a refusal, rarer, waits for them before it
is recorded.

How a delivery goes through the step ledger (its step claimed before the handler runs, its
result recorded before the reply; a step already done is answered again from the record and
acked the same way, after its ``completed`` event is stored) is in
:mod:`jetmesh.runtime.replica_steps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import Mapping

import msgspec
from nats.aio.msg import Msg

from .. import events as ev
from .._exceptions import (
    MemoryDenied,
    RegistryUnavailable,
    Reject,
    RejectedMessage,
    ScopeDenied,
    ToolRefused,
)
from ..bus.delivery import Delivery, delivery_of
from ..bus.pull import PullFeed
from ..bus.streams import advisories_stream
from ..client import MeshClient
from ..envelope import decode_body, encode, type_name
from ..identity.certificates import verify_certificate
from ..identity.keystore import Identity
from ..memory import keys
from ..models import prices_from, provider_from
from ..settings import MeshSettings
from ..telemetry import metrics, traces
from .agent import Agent
from .context import Context
from .discovery import Counts, Discovery, ServiceCard
from .failures import Failures
from .ledger import Recorded, StepLedger
from .limits import PlanLimits, plan_refusal
from .model_steps import Models
from .replica_steps import ReplicaSteps
from .step_leases import StepLeases

log = logging.getLogger("jetmesh.runtime")

ADVISORY_CAPACITY = 4
"""Max-deliveries advisories one replica handles at once."""


STOP_GRACE_S = 10.0
"""What stopping a replica may take past its drain timeouts before it is given up."""

STARTED_AFTER_S = 0.05
"""A first delivery's ``started`` event is emitted once its handler has run this long."""

RUN_EVENTS_S = 15.0
"""How long a refusal waits for the events its run wrote along the way to be stored: as
long as its ending event waits for a stream (``NO_STREAM_S``: a restart, a cluster's
election)."""


def carrying(recorded: Recorded, ctx: Context) -> Recorded:
    """``recorded`` with the events of ``ctx``'s run not stored yet (module docstring)."""
    carried = ctx.events_on_their_way()
    return msgspec.structs.replace(recorded, events=carried) if carried else recorded


def _certified_scopes(identity: Identity, roots: Mapping[str, bytes]) -> frozenset[str]:
    """The scopes ``identity``'s certificate grants (none if it does not verify: the
    replica will not get far, and meanwhile it may do nothing)."""
    try:
        return verify_certificate(identity.certificate, roots).scopes
    except RejectedMessage:
        return frozenset()


class ReplicaState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class Replica(ReplicaSteps):
    """One process's share of an agent role's work."""

    def __init__(
        self,
        agent: Agent,
        settings: MeshSettings,
        identity: Identity,
        *,
        roots: Mapping[str, bytes],
        models: Models | None = None,
    ) -> None:
        """
        Args:
            models: the process's model provider and prices, shared by its replicas; by
                default the replica builds its own from ``settings`` and closes it on drain.
        """
        if identity.name != agent.name:
            raise ValueError(f"identity {identity.name!r} is not agent {agent.name!r}")
        self.agent = agent
        self.settings = settings
        self.mesh = MeshClient(settings, identity, roots=roots)
        self.concurrency = agent.concurrency or settings.concurrency
        self.limits = PlanLimits.of(settings)
        self.state = ReplicaState.NEW
        self.handled = 0
        self.failed = 0
        """Deliveries that ended in a failure: refused, raised (sent back or given up on),
        denied by the policy (``jetmesh agents``'s errors)."""
        self._owns_models = models is None
        self.models = models or Models(provider_from(settings), prices_from(settings))
        self._inflight: dict[asyncio.Task[None], Msg] = {}
        self._settling: set[asyncio.Task[None]] = set()
        """Tasks past their handler and reply, waiting for their ending event to be stored
        before the ack: their slot is free for the next task (:meth:`_free_slot`)."""
        self.ledger = (
            StepLedger(
                self.mesh.redis,
                settings.subject_prefix,
                ttl_s=settings.memory_ttl_s,
                carried_ttl_s=math.ceil(settings.max_message_age_s),
                wait_replicas=settings.redis_wait_replicas,
                wait_timeout_ms=settings.redis_wait_timeout_ms,
            )
            if settings.step_ledger
            else None
        )
        self.leases = (
            StepLeases(self.ledger, agent.name, lease_ms=int(settings.ack_wait_s * 1000))
            if self.ledger is not None
            else None
        )
        self.failures = Failures(self.mesh, settings, agent.name, self.ledger)
        self.grant = frozenset(agent.scopes) & _certified_scopes(identity, roots)
        """What this role may do: its declared scopes, as far as its certificate grants."""
        self._unannounced: dict[Context, float] = {}
        self._to_announce = asyncio.Event()
        """Set while ``_unannounced`` may hold a task: the announcer sleeps otherwise."""
        self._announcer: asyncio.Task[None] | None = None
        self._feed: PullFeed
        self._advisories: PullFeed
        self._advisory_tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._discovery: Discovery | None = None
        self._invoke_name = f"invoke_agent {agent.name}"
        self._invoke_attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent.name,
        }

    @property
    def instance(self) -> str:
        return self.mesh.instance

    async def start(self) -> None:
        """Connect, declare the consumer (bind to it, as a role), start taking tasks.

        Raises:
            NotProvisioned: as a role, its stream, consumers or certificate are missing.
        """
        if self.state is not ReplicaState.NEW:
            return
        await self.mesh.start()
        try:
            await self.mesh.join_consumers(self.agent.name)
        except BaseException:
            await self.mesh.close()
            raise
        self._feed = PullFeed(
            self.mesh.nc,
            self.settings.tasks_stream,
            self.agent.name,
            self._dispatch,
            capacity=self.concurrency,
        )
        await self._feed.start()
        self.mesh.reconnect_listeners.append(self._feed.renew)
        self._advisories = PullFeed(
            self.mesh.nc,
            advisories_stream(self.settings),
            self.agent.name,
            self._dispatch_advisory,
            capacity=ADVISORY_CAPACITY,
        )
        await self._advisories.start()
        self.mesh.reconnect_listeners.append(self._advisories.renew)
        self.state = ReplicaState.RUNNING
        self._heartbeat = asyncio.create_task(self._progress_loop(), name="progress")
        self._announcer = asyncio.create_task(self._announce_loop(), name="announce")
        card = ServiceCard.of(self.agent, self.settings, self.instance)
        self._discovery = Discovery(
            self.mesh.nc, card, lambda: Counts(len(self._inflight), self.handled, self.failed)
        )
        await self._discovery.start()
        log.info(
            "%s replica %s running (concurrency %d)",
            self.agent.name,
            self.instance,
            self.concurrency,
        )

    def _dispatch(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self._process(msg))
        self._inflight[task] = msg
        task.add_done_callback(self._done)

    def _dispatch_advisory(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self.failures.on_max_deliveries(msg))
        self._advisory_tasks.add(task)
        task.add_done_callback(self._advisory_done)

    def _advisory_done(self, task: asyncio.Task[None]) -> None:
        self._advisory_tasks.discard(task)
        self._advisories.release()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if self.leases is not None:
            self.leases.forget(task)
        if task in self._settling:
            self._settling.discard(task)
        else:
            self._feed.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("task processing crashed", exc_info=task.exception())

    async def _progress_loop(self) -> None:
        """Keep long-running tasks alive: in-progress acks at a third of AckWait."""
        interval = self.settings.ack_wait_s / 3
        while True:
            await asyncio.sleep(interval)
            for msg in list(self._inflight.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()
            if self.leases is not None:
                await self.leases.renew()

    def _free_slot(self) -> None:
        """The running task has replied: its slot goes to the next task while its delivery
        settles (the ending event stored, then the ack), which holds no handler. The
        delivery stays in flight (kept alive, waited for by ``drain``)."""
        task = asyncio.current_task()
        if task is not None and task in self._inflight and task not in self._settling:
            self._settling.add(task)
            self._feed.release()

    async def _process(self, msg: Msg) -> None:
        delivery = delivery_of(msg.reply)
        with (
            traces.consuming(msg.subject, msg.headers, self.agent.name, delivery.attempt),
            metrics.handling(self.agent.name, delivery.attempt),
        ):
            if delivery.attempt < self.settings.max_deliver:
                await self._handle(msg, delivery)
                return
            # Its last delivery: keep it for the max-deliveries advisory should this fail.
            last = self.failures.last
            async with last.during(
                msg, stream_seq=delivery.stream_seq, stored_at=delivery.stored_at
            ):
                await self._handle(msg, delivery)

    async def _handle(self, msg: Msg, delivery: Delivery) -> None:
        try:
            verified = await self.mesh.verify(msg, stored_at=delivery.stored_at)
        except RejectedMessage as exc:
            self.failed += 1
            await self.failures.refuse(msg, exc)
            return
        except RegistryUnavailable as exc:  # nothing decided: take it again later
            log.warning("task %s goes back: %s", msg.subject, exc)
            await msg.nak(delay=self.settings.backoff_for(delivery.attempt))
            return
        traces.received(verified.envelope.workflow, verified.envelope.id)
        try:
            handler = self.agent.handler_for(verified.envelope.type)
            body = decode_body(verified.envelope, handler.input_type)
            keys.check_step(verified.envelope.step)
            if (too_deep := self.limits.check_arrival(verified.envelope.step)) is not None:
                raise too_deep
        except RejectedMessage as exc:
            # A verified envelope: audit it in its workflow and answer its caller.
            exc.envelope = verified.envelope  # type: ignore[attr-defined]
            self.failed += 1
            await self.failures.refuse(msg, exc)
            return
        task, caller = verified.envelope, verified.caller
        assert caller is not None  # tasks always carry a verified caller
        attempt = delivery.attempt
        step = keys.ledger_step(task.step, task.id)
        holder = f"{self.instance}:{delivery.stream_seq}:{attempt}"
        run = await self._begin(msg, task, caller, attempt, step, holder)
        if run is None:
            return
        ctx = Context(
            self.mesh,
            task,
            caller,
            attempt=attempt,
            concurrency=self.concurrency,
            ledger=self.ledger,
            journal_empty=run.journal_empty,
            models=self.models,
            grant=self.grant,
            delegation=verified.delegation,
        )
        started = time.perf_counter()
        if attempt == 1:
            self._unannounced[ctx] = time.monotonic()
            self._to_announce.set()
        else:
            await ctx.emit_event(ev.STARTED, type=task.type)
        try:
            with traces.span(self._invoke_name, self._invoke_attributes):
                result = await handler(body, ctx)
            recorded = Recorded(
                kind="reply", type=type_name(type(result)), body=msgspec.Raw(encode(result))
            )
        except asyncio.CancelledError:
            await self._release(task, step, holder)
            await msg.nak()
            raise
        except Reject as exc:
            self.failed += 1
            await self._run_over(ctx)
            await self.failures.finish_failed(
                msg, task, caller, attempt, "rejected-by-handler", exc.reason, error_type="Reject"
            )
            return
        except (ScopeDenied, ToolRefused, MemoryDenied) as exc:  # the same would be refused
            self.failed += 1
            await self._run_over(ctx)
            await self.failures.denied(msg, ctx, exc, attempt)
            return
        except Exception as exc:
            if (refusal := plan_refusal(exc)) is not None:  # no retry: the plan is refused
                reason, error_type, detail = refusal
                self.failed += 1
                await self._run_over(ctx)
                await self.failures.finish_failed(
                    msg, task, caller, attempt, reason, detail, error_type=error_type
                )
                return
            await self._release(task, step, holder)
            self.failed += 1
            await self.failures.after_failure(msg, ctx, exc, attempt)
            return
        finally:
            self._unannounced.pop(ctx, None)
        duration_ms = (time.perf_counter() - started) * 1000
        if self.ledger is not None and not await self._record(
            msg, task, attempt, step, holder, carrying(recorded, ctx)
        ):
            return
        await self._reply(task, recorded)
        self._free_slot()
        await ctx.emit_event(
            ev.COMPLETED,
            stored=True,  # before the ack (module docstring)
            duration_ms=duration_ms,
            type=task.type,
            detail=f"-> {recorded.type}",
            body=ev.EventPayload(type=recorded.type, value=recorded.body),
        )
        await msg.ack()  # after its event is stored (module docstring)
        self.handled += 1
        metrics.ended(metrics.COMPLETED)

    async def _run_over(self, ctx: Context) -> None:
        """The handler raised for good: it is not announced any more, and the events it
        wrote in the background are stored before its refusal is recorded (module
        docstring); after :data:`RUN_EVENTS_S` the run goes on without them (they are
        still sent again until stored, as every event)."""
        self._unannounced.pop(ctx, None)
        if not await ctx.events_stored(RUN_EVENTS_S):
            log.warning(
                "task %s: events of its run not stored in %.0f s: its end is recorded "
                "without waiting longer",
                ctx.task.id,
                RUN_EVENTS_S,
            )

    async def _announce_loop(self) -> None:
        """Emit ``started`` for first deliveries whose handler has run ``STARTED_AFTER_S``:
        a short task is described completely by its ``completed`` event (which carries
        its duration), a long or stuck one shows up while it runs. Redeliveries always
        announce themselves at once. One timer per replica, not one per task, and none
        while no task waits to be announced (an idle replica does not wake for it)."""
        while True:
            if not self._unannounced:
                self._to_announce.clear()
                await self._to_announce.wait()
            await asyncio.sleep(STARTED_AFTER_S / 2)
            due = time.monotonic() - STARTED_AFTER_S
            for ctx, started in list(self._unannounced.items()):
                if started <= due and self._unannounced.pop(ctx, None) is not None:
                    with contextlib.suppress(Exception):
                        await ctx.emit_event(ev.STARTED, type=ctx.task.type)

    async def drain(self, timeout: float | None = None) -> None:
        """Stop fetching, finish or nak in-flight tasks, flush events, close. Idempotent.

        Bounded: the steps before closing get twice ``timeout`` (tasks, then dead letters
        under way) and :data:`STOP_GRACE_S`; past that they are given up, and the closing
        is bounded itself (see ``MeshClient.close``).
        """
        if self.state in (ReplicaState.DRAINING, ReplicaState.STOPPED):
            return
        if self.state is ReplicaState.NEW:
            self.state = ReplicaState.STOPPED
            return
        self.state = ReplicaState.DRAINING
        timeout = timeout if timeout is not None else self.settings.drain_timeout_s
        try:
            await asyncio.wait_for(self._stop_serving(timeout), 2 * timeout + STOP_GRACE_S)
        except TimeoutError:
            log.warning("%s replica %s: stopping took too long; closing", *self._names())
        await self.mesh.close()
        if self._owns_models:
            await self.models.provider.aclose()
        self.state = ReplicaState.STOPPED
        log.info("%s replica %s stopped after %d tasks", *self._names(), self.handled)

    def _names(self) -> tuple[str, str]:
        return self.agent.name, self.instance

    async def _stop_serving(self, timeout: float) -> None:
        """Stop fetching and answering, let in-flight tasks finish within ``timeout``
        (then cancel them), stop the timers."""
        if self._discovery is not None:  # gone from `jetmesh agents` as it starts draining
            await self._discovery.stop()
        await self._feed.stop()
        await self._advisories.stop()
        if self._advisory_tasks:  # dead-lettering in progress: short, let it finish
            await asyncio.wait(list(self._advisory_tasks), timeout=timeout)
        if self._inflight:
            _, pending = await asyncio.wait(list(self._inflight), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for loop_task in (self._heartbeat, self._announcer):
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until ``stop`` is set, then drain."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.drain()
