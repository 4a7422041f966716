"""What a handler gets besides its message: who asked, where it is, and how to go on."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from .. import events as ev
from .._exceptions import ConfigError
from ..client import MeshClient, decode_reply
from ..envelope import Envelope
from ..identity.tokens import Caller
from ..memory import Conversation, WorkingMemory
from .ledger import Recorded, StepLedger

T = TypeVar("T")


class Context:
    """The context of one task being handled.

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
    ) -> None:
        self._mesh = mesh
        self._ledger = ledger
        self.task = task
        self.caller = caller
        self.workflow = task.workflow
        self.agent = mesh.name
        self.attempt = attempt
        self._calls = 0
        self._gather_limit = concurrency
        self._memory: WorkingMemory | None = None
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that names the agent, workflow and step."""
        if self._log is None:
            self._log = logging.LoggerAdapter(
                logging.getLogger(f"jetmesh.agent.{self.agent}"),
                {"workflow": self.workflow, "step": self.task.step},
            )
        return self._log

    @property
    def step(self) -> str:
        return self.task.step

    @property
    def memory(self) -> WorkingMemory:
        """This agent's working memory for this workflow (Redis, versioned)."""
        if self._memory is None:
            s = self._mesh.settings
            self._memory = WorkingMemory(
                self._mesh.redis,
                s.subject_prefix,
                self.workflow,
                self.agent,
                ttl_s=s.memory_ttl_s,
                max_value_bytes=s.memory_max_value_bytes,
            )
        return self._memory

    def conversation(self, name: str = "default") -> Conversation:
        """A conversation of this agent in this workflow, for model calls."""
        s = self._mesh.settings
        return Conversation(
            self._mesh.redis,
            s.subject_prefix,
            self.workflow,
            self.agent,
            name,
            ttl_s=s.memory_ttl_s,
        )

    def next_step(self, agent: str) -> str:
        """The deterministic step key of the next call: same code, same keys on a re-run."""
        self._calls += 1
        return f"{self.task.step}/{agent}.{self._calls}"

    def call(
        self, agent: str, body: Any, *, returns: type[T], timeout: float | None = None
    ) -> Awaitable[T]:
        """Send ``body`` to ``agent`` and await its reply as ``returns``.

        The step key is taken when ``call`` is invoked, not when it is awaited, so calls
        passed to :meth:`gather` get their keys in argument order.

        Raises:
            MeshTimeout: no reply in time.
            CallFailed: the agent answered with an error.
        """
        step = self.next_step(agent)
        return self._call(agent, body, returns, step, timeout)

    async def _call(
        self, agent: str, body: Any, returns: type[T], step: str, timeout: float | None
    ) -> T:
        started = time.perf_counter()
        if self._ledger is not None:
            recorded = await self._ledger.journaled(self.workflow, step)
            if recorded is not None:  # this handler runs again: the call already completed
                await self.emit_event(
                    ev.REPLY, callee_step=step, target=agent, detail="from the journal"
                )
                return decode_reply(agent, recorded.as_envelope(self.task), returns)
        await self.emit_event(ev.CALL, target=agent, callee_step=step)
        reply = await self._mesh.call_envelope(
            agent,
            body,
            workflow=self.workflow,
            caller=self.task.caller,
            parent=self.task.id,
            step=step,
            timeout=timeout,
        )
        if self._ledger is not None:
            await self._ledger.journal(self.workflow, step, Recorded.of(reply))
        await self.emit_event(
            ev.REPLY,
            callee_step=step,
            target=agent,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        return decode_reply(agent, reply, returns)

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
        return await self._ledger.once(
            self.workflow,
            self.task.step or self.task.id,
            key,
            effect,
            returns,
            holder=f"{self._mesh.instance}#{self.attempt}",
            reconcile=reconcile,
        )

    async def gather(self, calls: Iterable[Awaitable[T]], *, limit: int | None = None) -> list[T]:
        """Await several calls concurrently (at most ``limit`` at once); results in order.

        The first failure is raised after the others are cancelled.
        """
        semaphore = asyncio.Semaphore(limit or self._gather_limit)

        async def bounded(call: Awaitable[T]) -> T:
            async with semaphore:
                return await call

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(c)) for c in calls]
        return [t.result() for t in tasks]

    async def emit(self, kind: str, detail: str = "") -> None:
        """Record a custom event (``kind`` like ``critique`` or ``note``) in the workflow."""
        await self.emit_event(kind, detail=detail)

    async def emit_event(self, kind: str, **fields: Any) -> None:
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
        await self._mesh.emit(self.workflow, event, caller=self.task.caller, parent=self.task.id)
