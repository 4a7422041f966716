"""What a handler gets besides its message: who asked, where it is, and how to go on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import msgspec

from .. import events as ev
from .._exceptions import ConfigError, MeshTimeout
from ..calls import decode_reply
from ..client import MeshClient
from ..envelope import Envelope, ErrorBody, encode, type_name
from ..identity.delegation import Delegation
from ..identity.tokens import Caller
from ..models import ModelReply, ModelRequest
from ..policy.model import Policy, policy_of
from ..signals import ReceivedSignal, Signal, wait_signal
from .budgets import spending_for
from .context_base import Authority, ContextBase, MemorySpace
from .ledger import CarriedEvent, Recorded, StepLedger
from .limits import PlanLimits
from .model_steps import Models, complete_step
from .preflight import preflight_for
from .streaming import ChunkFeed, ChunkSink, read_chunks

T = TypeVar("T")

PRUNE_AT = 256
"""A run's ids of events sent in the background are pruned of the stored ones once this
many (or twice as many as were left last time) are kept."""


class Context(ContextBase):
    """The context of one task being handled on the mesh: calls are sent as tasks, side
    effects recorded in the step ledger, events published to the workflow's log.

    Attributes:
        caller: the verified identity the workflow runs for.
        workflow: the workflow id.
        task: the task envelope being handled.
        agent: this agent's name.
        attempt: delivery count of this task (1 on the first try).
    """

    def __init__(
        self,
        mesh: MeshClient,
        task: Envelope,
        caller: Caller,
        *,
        attempt: int,
        concurrency: int,
        ledger: StepLedger | None = None,
        journal_empty: bool = False,
        models: Models | None = None,
        grant: Iterable[str] = (),
        delegation: Delegation | None = None,
    ) -> None:
        super().__init__(
            task,
            caller,
            agent=mesh.name,
            attempt=attempt,
            concurrency=concurrency,
            limits=PlanLimits.of(mesh.settings),
            grant=grant,
            delegation=delegation,
        )
        self._mesh = mesh
        self._ledger = ledger
        self._journal_empty = journal_empty
        """The step's first run (its first claim): no call of it is journaled yet."""
        self._models = models
        self._chunks: ChunkSink | None = None
        self._on_their_way: list[str] = []
        """Ids of this run's events sent in the background and perhaps not stored yet (those
        stored are dropped now and then: a long run may write many)."""
        self._prune_at = PRUNE_AT

    @property
    def mesh(self) -> MeshClient:
        """This replica's connection to the mesh (its trust store, Redis): for roles built
        into the mesh, like the tool gateway."""
        return self._mesh

    def _policy(self) -> Policy | None:
        return policy_of(self._mesh.settings.policy_file)

    def _signal_senders(self, senders: Iterable[str] | None) -> frozenset[str] | None:
        """Whose signals a wait takes: ``senders``, else the policy's ``signal_senders``
        for this role, else None (any ingress)."""
        if senders is not None:
            return frozenset(senders)
        policy = self._policy()
        if policy is None or self.agent not in policy.roles:
            return None
        return policy.roles[self.agent].signal_senders

    def _memory_space(self) -> MemorySpace:
        s = self._mesh.settings
        return MemorySpace(
            self._mesh.redis, s.subject_prefix, s.memory_ttl_s, s.memory_max_value_bytes
        )

    async def _call(
        self,
        agent: str,
        body: Any,
        returns: type[T],
        step: str,
        timeout: float | None,
        handoff: Authority,
        feed: ChunkFeed | None = None,
    ) -> T:
        started = time.perf_counter()
        if self._ledger is not None and not self._journal_empty:
            recorded = await self._ledger.journaled(self.workflow, self.agent, step)
            if recorded is not None:  # this handler runs again: the call already completed
                await self.emit_event(
                    ev.REPLY,
                    callee_step=step,
                    target=agent,
                    detail="from the journal",
                    **_reply_fields(recorded),
                )
                if feed is not None:  # its chunks, as the callee stored them
                    for chunk in await read_chunks(
                        self._mesh, self.workflow, step=step, agent=agent
                    ):
                        feed.put(chunk)
                return decode_reply(agent, recorded.as_envelope(self.task), returns)
        type_ = type_name(type(body))
        raw = body if isinstance(body, msgspec.Raw) else msgspec.Raw(encode(body))
        if (unsent := await preflight_for(self._mesh).check(agent, body, type_)) is not None:
            await self._not_sent(agent, step, unsent)
        await self.emit_event(
            ev.CALL, target=agent, callee_step=step, body=ev.EventPayload(type=type_, value=raw)
        )
        try:
            reply = await self._mesh.call_envelope(
                agent,
                raw,
                workflow=self.workflow,
                caller=self.task.caller,
                parent=self.task.id,
                step=step,
                timeout=timeout,
                type_=type_,
                on_chunk=feed.add if feed is not None else None,
                chain=(
                    *self.task.chain,
                    self._mesh.delegate(
                        self.task.chain[-1] if self.task.chain else self.task.caller,
                        to=agent,
                        workflow=self.workflow,
                        step=step,
                        scopes=handoff.scopes,
                        expires=handoff.expires,
                    ),
                ),
            )
        except (MeshTimeout, asyncio.CancelledError) as exc:
            # No reply: said in the log, or a re-run would take the callee's `completed`
            # (if it came after all) for a reply this run never had. The error raised is
            # the call's, whatever becomes of the event (the publisher logs a failure).
            with contextlib.suppress(Exception):
                reason = ev.TIMED_OUT if isinstance(exc, MeshTimeout) else ev.CANCELLED
                await self._replied(agent, step, started, reason=reason)
            raise
        record = Recorded.of(reply)
        if self._ledger is not None:
            await self._ledger.journal(self.workflow, self.agent, step, record)
        if record.kind == "error" or self._ledger is None:
            # A result is in the log once: its callee's signed ``completed`` event carries
            # the same bytes (stored before the task is acked; a callee killed before that
            # answers again from its step ledger and writes it then). An error may come
            # from elsewhere than the callee's run (a refusal, a dead letter), and without
            # a ledger a redelivered callee may run again and answer otherwise: the
            # caller records what it got.
            await self._replied(agent, step, started, **_reply_fields(record))
        return decode_reply(agent, reply, returns)

    async def _replied(self, agent: str, step: str, started: float, **fields: Any) -> None:
        """The ``reply`` event of the call of ``step`` sent at ``started`` (perf_counter)."""
        await self.emit_event(
            ev.REPLY,
            callee_step=step,
            target=agent,
            duration_ms=(time.perf_counter() - started) * 1000,
            **fields,
        )

    async def _complete(self, request: ModelRequest, step: str, stream: bool) -> ModelReply:
        spending = spending_for(self._policy(), self._mesh, self.agent)
        chunks = self._chunk_sink() if stream else None
        return await complete_step(
            self,
            self._models,
            self._ledger,
            request,
            step,
            spending,
            chunks,
            journal_empty=self._journal_empty,
        )

    def _chunk_sink(self) -> ChunkSink:
        if self._chunks is None:
            self._chunks = ChunkSink(
                self._mesh,
                self.task,
                agent=self.agent,
                caller=self.caller.subject,
                attempt=self.attempt,
            )
        return self._chunks

    async def stream(self, chunk: Any) -> bool:
        """Send ``chunk`` (a ``str``, a Struct, anything that encodes as JSON) as this
        task's next partial result: stored as a ``chunk`` event of the workflow, and sent
        to the caller while it waits (``ctx.call(..., stream=True)``, ``jetmesh publish
        --stream``). See :mod:`jetmesh.runtime.streaming`.

        Returns:
            False when an earlier run of this step (a redelivery) stored this index
            already: it is neither stored nor sent again.

        Raises:
            Oversized: the chunk would take its event over ``max_payload_bytes``.
        """
        return await self._chunk_sink().send(chunk)

    async def once(
        self,
        key: str,
        effect: Callable[[], Awaitable[T]],
        *,
        returns: type[T],
        reconcile: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """Run a side effect at most once for this step of the workflow.

        The first run claims ``key`` in Redis, runs ``effect`` and records its result; any
        later run of this step (a redelivery, a late duplicate, a re-run after a crash) gets
        the recorded result instead. If ``effect`` raises, the claim is dropped and a retry
        may run it. If a run claimed it and never finished (its replica died mid-effect),
        the effect may or may not have happened: :class:`EffectInDoubt` is raised rather
        than risking it twice.

        ``reconcile`` settles that doubt by asking the effect's target, typically by an
        idempotency key the effect wrote along with its work (a payment id, a marker keyed
        by ``ctx.workflow`` and ``ctx.step``). It returns what the effect returned if the
        effect happened, recorded as done and returned here; or None if it did not, and
        this run takes the claim over and runs ``effect``. It is only called for a claim in
        doubt, and it is only right if the target can tell: write the effect and its key
        atomically.

        Example:
            >>> receipt = await ctx.once(                                 # doctest: +SKIP
            ...     "charge", charge, returns=Receipt, reconcile=find_charge
            ... )

        Raises:
            EffectInDoubt: claimed by a run that did not finish, and no ``reconcile``.
        """
        if self._ledger is None:
            raise ConfigError("ctx.once needs the step ledger (JETMESH_STEP_LEDGER)")
        ran = False

        async def run() -> T:
            nonlocal ran
            ran = True
            return await effect()

        result = await self._ledger.once(
            self.workflow,
            self.agent,
            self.task.step or self.task.id,
            key,
            run,
            returns,
            holder=f"{self._mesh.instance}#{self.attempt}",
            reconcile=reconcile,
        )
        await self.emit_event(  # what a re-run returns instead of running it again
            ev.EFFECT,
            key=key,
            body=ev.EventPayload(type=type_name(returns), value=msgspec.Raw(encode(result))),
            detail="" if ran else "recorded result",
        )
        return result

    async def wait_for(
        self,
        name: str,
        *,
        returns: type[T],
        timeout: float,
        senders: Iterable[str] | None = None,
    ) -> Signal[T]:
        """Wait for the signal ``name`` sent to this workflow (``jetmesh signal``,
        :meth:`MeshClient.signal`): a person's approval, an outside system's callback.

        A signal sent before this call counts. The wait holds no state only in memory:
        the task is kept alive with in-progress acks, and if this replica dies the re-run
        finds the signal in the workflow's log and the wait's start in the step ledger,
        so ``timeout`` (seconds) counts from the first time this step waited.

        Only a signal for this step counts, signed by one of ``senders`` when given, else
        by a role the policy file names in this role's ``signal_senders``, else by an
        ingress (what acts for a person: the CLI, a gateway); one by another role is
        refused, audited, and the step waits on (see :mod:`jetmesh.signals`).

        Raises:
            SignalTimeout: no signal ``name`` within ``timeout``.
        """
        now = time.time()
        started = (
            await self._ledger.wait_started(self.workflow, self.agent, self.task.step, name, now)
            if self._ledger is not None
            else now
        )
        await self.emit_event(ev.WAITING, key=name, detail=f"up to {timeout:g} s")
        signal = await wait_signal(
            self._mesh,
            self.workflow,
            name,
            returns,
            deadline=started + timeout,
            step=self.task.step,
            senders=self._signal_senders(senders),
        )
        received = ReceivedSignal.of(signal)
        await self.emit_event(
            ev.SIGNALLED,
            key=name,
            body=ev.EventPayload(
                type=type_name(ReceivedSignal), value=msgspec.Raw(encode(received))
            ),
            detail=f"from {signal.caller or signal.sender}",
            duration_ms=(time.time() - started) * 1000,
        )
        return signal

    async def emit_event(self, kind: str, *, stored: bool = False, **fields: Any) -> None:
        """Write an event of this task to the workflow's log; ``stored``: return once the
        stream has it (see :meth:`jetmesh.client.MeshClient.emit`)."""
        fields.setdefault("step", self.task.step)
        event = ev.Event(
            kind=kind,
            agent=self.agent,
            at=time.time(),
            instance=self._mesh.instance,
            task=self.task.id,
            parent=self.task.parent,
            caller=self.caller.subject,
            attempt=self.attempt,
            **fields,
        )
        sent = await self._mesh.emit(
            self.workflow, event, caller=self.task.caller, parent=self.task.id, stored=stored
        )
        if sent is not None:
            self._on_their_way.append(sent)
            if len(self._on_their_way) >= self._prune_at:
                pending = self._mesh.publisher.on_their_way(self._on_their_way)
                self._on_their_way = [msg_id for msg_id, _ in pending]
                self._prune_at = max(PRUNE_AT, 2 * len(self._on_their_way))

    async def events_stored(self, timeout: float) -> bool:
        """Wait until every event this run wrote is stored (False if some are still on
        their way at ``timeout``): before a refusal is recorded, so that a replica killed
        after that, whose task is then answered from the record, took none of them along."""
        ids, self._on_their_way = self._on_their_way, []
        return await self._mesh.publisher.stored(ids, timeout)

    def events_on_their_way(self) -> tuple[CarriedEvent, ...]:
        """The events this run wrote that are not stored yet, as published: what its
        result's record carries, to send again should this replica die with them."""
        now = time.time()
        return tuple(
            CarriedEvent(msg_id, p.subject, msgspec.Raw(p.data), dict(p.headers), now)
            for msg_id, p in self._mesh.publisher.on_their_way(self._on_their_way)
        )


def _reply_fields(reply: Recorded) -> dict[str, Any]:
    """What a ``reply`` event records of a reply: its body and type, and for an error the
    error's reason code (what tells a re-run to raise it)."""
    fields: dict[str, Any] = {"body": ev.EventPayload(type=reply.type, value=reply.body)}
    if reply.kind == "error":
        try:
            reason = msgspec.json.decode(reply.body, type=ErrorBody).reason
        except msgspec.MsgspecError:  # an error reply from a peer that shapes it otherwise
            reason = ""
        fields["reason"] = reason or "error"
    return fields
