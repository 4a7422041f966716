"""What every handler context offers, whoever carries out its calls.

Two contexts share this base: :class:`~jetmesh.runtime.context.Context`, which sends calls
over the mesh and records effects in the step ledger, and
:class:`~jetmesh.replay.context.ReplayContext`, which answers them from a workflow's
recorded history. The parts that must behave the same in both live here: step keys (so a
re-run asks for the same steps), the plan's limits, ``gather``, the logger, working memory
and conversations; and, from :mod:`jetmesh.runtime.call_checks`, the checks a call passes
before it is sent and the events that refuse one.
A subclass says how a call is carried out (``_call``), where a model's reply comes from
(``_complete``), how a side effect runs (``once``), where events go (``emit_event``) and
where memory lives (``_memory_space``).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, NamedTuple, TypeVar, overload

from redis.asyncio import Redis

from ..envelope import Envelope
from ..identity.delegation import Delegation
from ..identity.tokens import Caller
from ..memory import Conversation, WorkingMemory
from ..models import ModelReply, ModelRequest
from ..policy.model import Policy as MeshPolicy
from ..policy.scopes import effective_scopes
from ..signals import Signal
from .call_checks import Authority as Authority  # re-exported: Context, ReplayContext
from .call_checks import CallChecks
from .gathering import OnFailure, Outcome, PendingCall, gather
from .limits import PlanLimits
from .model_steps import StepModel
from .streaming import ChunkFeed, StreamingCall

T = TypeVar("T")


class MemorySpace(NamedTuple):
    """Where a context's working memory and conversations live."""

    redis: Redis
    prefix: str
    """The first part of every key (the subject prefix, or a scratch prefix in a re-run)."""
    ttl_s: int
    max_value_bytes: int


class ContextBase(CallChecks, abc.ABC):
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
        task: Envelope,
        caller: Caller,
        *,
        agent: str,
        attempt: int,
        concurrency: int,
        limits: PlanLimits | None = None,
        grant: Iterable[str] = (),
        delegation: Delegation | None = None,
    ) -> None:
        self.task = task
        self.caller = caller
        self.grant = frozenset(grant)
        """The scopes this agent role was granted (``Agent(scopes=...)``, its certificate)."""
        self.delegation = delegation
        """What the task's verified delegation chain hands this hop (None when the task was
        not verified here: a re-run from history)."""
        self.workflow = task.workflow
        self.agent = agent
        self.attempt = attempt
        self.limits = limits or PlanLimits()
        """How deep calls may nest and how many this task may make."""
        self._calls = 0
        self._sent = 0
        """Calls to agents made so far (``_calls`` also counts model calls)."""
        self._gather_limit = concurrency
        self._memory: WorkingMemory | None = None
        self._log: logging.LoggerAdapter[logging.Logger] | None = None

    # -- supplied by each kind of context --------------------------------------------------

    @abc.abstractmethod
    def _memory_space(self) -> MemorySpace:
        """Where this context's memory lives."""

    @abc.abstractmethod
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
        """Carry out the call that :meth:`call` numbered ``step``, handing the callee
        ``handoff`` of this hop's authority; ``feed`` takes the chunks it streams."""

    @abc.abstractmethod
    async def _complete(self, request: ModelRequest, step: str, stream: bool) -> ModelReply:
        """Answer the model call that ``ctx.model`` numbered ``step``; ``stream``: its
        output goes out as this task's chunks (:meth:`stream`) as it comes."""

    @abc.abstractmethod
    async def stream(self, chunk: Any) -> bool:
        """Send ``chunk`` (a ``str``, a Struct, anything that encodes as JSON) as this
        task's next partial result (see :mod:`jetmesh.runtime.streaming`); False when an
        earlier run of this step already stored it."""

    @abc.abstractmethod
    async def once(
        self,
        key: str,
        effect: Callable[[], Awaitable[T]],
        *,
        returns: type[T],
        reconcile: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """Run a side effect at most once for this step of the workflow."""

    @abc.abstractmethod
    async def wait_for(self, name: str, *, returns: type[T], timeout: float) -> Signal[T]:
        """Wait for the signal ``name`` sent to this workflow."""

    @abc.abstractmethod
    async def emit_event(self, kind: str, **fields: Any) -> None:
        """Record an event about this task (fields of :class:`~jetmesh.events.Event`)."""

    # -- the same in every context ---------------------------------------------------------

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
            space = self._memory_space()
            self._memory = WorkingMemory(
                space.redis,
                space.prefix,
                self.workflow,
                self.agent,
                ttl_s=space.ttl_s,
                max_value_bytes=space.max_value_bytes,
            )
        return self._memory

    @property
    def model(self) -> StepModel:
        """The configured model (``JETMESH_MODEL_*``): ``await ctx.model.complete(prompt)``.
        Each call is a step: journaled, recorded in a ``model`` event with its tokens and
        cost, and answered from the history in a re-run."""
        return StepModel(self.next_step, self._complete)

    def conversation(self, name: str = "default") -> Conversation:
        """A conversation of this agent in this workflow, for model calls."""
        space = self._memory_space()
        return Conversation(
            space.redis, space.prefix, self.workflow, self.agent, name, ttl_s=space.ttl_s
        )

    def next_step(self, agent: str) -> str:
        """The deterministic step key of the next call: same code, same keys on a re-run."""
        self._calls += 1
        return f"{self.task.step}/{agent}.{self._calls}"

    @overload
    def call(
        self,
        agent: str,
        body: Any,
        *,
        returns: type[T],
        timeout: float | None = None,
        scopes: Iterable[str] | None = None,
        expires_in: float | None = None,
        stream: Literal[False] = False,
    ) -> PendingCall[T]: ...

    @overload
    def call(
        self,
        agent: str,
        body: Any,
        *,
        returns: type[T],
        timeout: float | None = None,
        scopes: Iterable[str] | None = None,
        expires_in: float | None = None,
        stream: Literal[True],
    ) -> StreamingCall[T]: ...

    def call(
        self,
        agent: str,
        body: Any,
        *,
        returns: type[T],
        timeout: float | None = None,
        scopes: Iterable[str] | None = None,
        expires_in: float | None = None,
        stream: bool = False,
    ) -> PendingCall[T] | StreamingCall[T]:
        """Send ``body`` to ``agent`` and await its reply as ``returns``.

        With ``stream=True`` the callee's partial results (its ``ctx.stream``) come too:
        ``async for chunk in call`` yields them as they arrive, then ``await
        call.result()`` gives the reply (:class:`~jetmesh.runtime.streaming.StreamingCall`).

        The step key is taken when ``call`` is invoked, not when it is awaited, so calls
        passed to :meth:`gather` get their keys in argument order. The call is sent when
        it is awaited.

        The callee acts for the same caller with the scopes delegated to this hop
        (:attr:`delegated_scopes`), until the same expiry; ``scopes`` and ``expires_in``
        hand it less: a subset of them, for at most that many seconds. Each call adds a
        link signed by this agent to the task's delegation chain.

        Raises:
            MeshTimeout: no reply within ``timeout`` seconds (default ``call_timeout_s``).
            CallFailed: the agent answered with an error.
                (With ``stream=True``, these end the iteration and :meth:`result`.)
            PlanTooDeep, FanOutExceeded: the call would break ``max_call_depth`` or
                ``max_fan_out``; it is not sent, and a ``call-refused`` event says so.
            ScopeDenied: ``scopes`` names a scope not delegated to this hop, or a loaded
                policy does not list ``agent`` in this role's ``calls``; nothing is sent,
                and a ``denied`` event says so.
            BodyRejected: ``body`` fails the input schema ``agent``'s replicas publish.
            NoReplicas: no replica serves ``agent`` (``call_preflight = "served"``).
                Both are found by the pre-flight (:mod:`jetmesh.runtime.preflight`):
                nothing is sent, and a ``call-refused`` event says so.
        """
        feed = ChunkFeed() if stream else None
        pending = self._pending_call(agent, body, returns, timeout, scopes, expires_in, feed)
        if feed is None:
            return pending
        return StreamingCall(agent, pending.step, lambda: pending, feed)

    def _pending_call(
        self,
        agent: str,
        body: Any,
        returns: type[T],
        timeout: float | None,
        scopes: Iterable[str] | None,
        expires_in: float | None,
        feed: ChunkFeed | None,
    ) -> PendingCall[T]:
        """The call :meth:`call` makes, numbered now, sent when awaited."""
        preview = f"{self.task.step}/{agent}.{self._calls + 1}"
        refused = self.limits.check(preview, agent, self._sent + 1)
        if refused is not None:
            return PendingCall(
                agent, refused.step, lambda _: self._refuse(agent, refused), refused=refused
            )
        if (not_called := self._not_in_calls(agent)) is not None:
            return PendingCall(
                agent,
                preview,
                lambda _: self._deny(f"call:{agent}", not_called, what=f"call {agent}"),
            )
        handoff = self._handoff(self.delegated_scopes, scopes, expires_in)
        if isinstance(handoff, str):
            wider, detail = ", ".join(sorted(set(scopes or ()) - self.delegated_scopes)), handoff
            return PendingCall(
                agent, preview, lambda _: self._deny(wider, detail, what=f"call {agent}")
            )
        self._sent += 1
        step = self.next_step(agent)

        def start(timeout_s: float | None) -> Awaitable[T]:
            return self._call(agent, body, returns, step, timeout_s, handoff, feed)

        return PendingCall(agent, step, start, timeout=timeout)

    @overload
    async def gather(
        self,
        calls: Iterable[Awaitable[T]],
        *,
        limit: int | None = None,
        timeout: float | None = None,
        on_failure: Literal["fail-fast"] = "fail-fast",
    ) -> list[T]: ...

    @overload
    async def gather(
        self,
        calls: Iterable[Awaitable[T]],
        *,
        limit: int | None = None,
        timeout: float | None = None,
        on_failure: Literal["partial"],
    ) -> list[Outcome[T]]: ...

    async def gather(
        self,
        calls: Iterable[Awaitable[T]],
        *,
        limit: int | None = None,
        timeout: float | None = None,
        on_failure: OnFailure = "fail-fast",
    ) -> list[T] | list[Outcome[T]]:
        """Await several calls concurrently; results in the order of ``calls``.

        Args:
            calls: ``ctx.call(...)``s (or other awaitables, e.g. ``ctx.model.complete``).
            limit: at most this many at once (default: the replica's ``concurrency``).
            timeout: the deadline of each call, in seconds, counted from when it is sent;
                a call made with its own ``timeout`` keeps it. An awaitable that is not a
                call is cut off after it, with ``MeshTimeout``.
            on_failure: ``"fail-fast"``: the first failure cancels the calls still running
                and is raised. ``"partial"``: every call runs to its end, and each slot
                is :class:`~jetmesh.Ok` (its value) or :class:`~jetmesh.Failed` (its typed
                error: ``CallFailed``, ``MeshTimeout``, ...).

        Raises:
            PlanTooDeep, FanOutExceeded: a call would break the plan's limits; none of
                the calls is sent, whatever the policy.
            MeshError: with ``fail-fast``, the first call's failure.
        """
        return await gather(
            calls, limit=limit or self._gather_limit, timeout=timeout, on_failure=on_failure
        )

    @property
    def delegated_scopes(self) -> frozenset[str]:
        """The scopes the delegation chain hands this hop: the caller's, narrowed by every
        hop that narrowed them on the way (before this role's own grant cuts them)."""
        return self.delegation.scopes if self.delegation else self.caller.scopes

    @property
    def scopes(self) -> frozenset[str]:
        """What this hop may do: the delegated scopes ∩ this agent's grant (the caller's
        scopes, narrowed along the chain, cut by this role's grant)."""
        return effective_scopes(self.delegated_scopes, self.grant)

    def permits(self, scope: str) -> bool:
        """Whether ``scope`` is in :attr:`scopes`."""
        return scope in self.scopes

    async def require_scope(self, scope: str, *, what: str = "") -> None:
        """Go on only if this hop may use ``scope``; otherwise record a ``denied`` event
        (who, on whose behalf, what for, why) and raise :class:`ScopeDenied`.

        Raises:
            ScopeDenied: ``scope`` is not granted to the caller, the agent, or both.
        """
        if self.permits(scope):
            return
        if not self.caller.has_scope(scope):
            lacking = [f"the caller {self.caller.subject}"]
        elif scope not in self.delegated_scopes:
            lacking = [f"the chain {' -> '.join(self.delegation.path if self.delegation else ())}"]
        else:
            lacking = []
        if scope not in self.grant:
            lacking.append(f"the agent {self.agent}")
        await self._deny(scope, f"{scope} is not granted to {' and '.join(lacking)}", what=what)

    async def tool(
        self,
        name: str,
        args: Any,
        *,
        returns: type[T],
        approval: bool = False,
        action: str = "",
        approval_timeout: float | None = None,
        timeout: float | None = None,
    ) -> T:
        """Run tool ``name`` with ``args`` through the tool gateway (``toolgate``), which
        holds its credential; return its result as ``returns``. See
        :mod:`jetmesh.runtime.tool_calls`.

        Args:
            name: the tool.
            args: its arguments: a Struct or dict that encodes as a JSON object.
            returns: the type of its result.
            approval: ask a person even when the policy does not require it.
            action: what a person approving it reads (default: the tool and its args).
            approval_timeout: seconds to wait for a person (default 4 hours).
            timeout: the gateway call's deadline (default ``call_timeout_s``).

        Raises:
            ScopeDenied: the policy grants this role no such tool, or its scope is not in
                :attr:`scopes` (refused here, with a ``denied`` event; nothing is sent).
            ApprovalDenied: the person denied it. ApprovalTimeout: nobody decided in time.
            ToolRefused: the gateway refused it (a subclass for each reason).
            CallFailed: the tool failed (after the gateway's retries).
        """
        # Imported here: the tool gateway's package (jetmesh.toolgate, whose wire types
        # tool_calls speaks) loads the gateway, an agent built on this runtime.
        from .tool_calls import DEFAULT_APPROVAL_TIMEOUT_S, call_tool

        return await call_tool(
            self,
            name,
            args,
            returns=returns,
            policy=self._policy(),
            approval=approval,
            action=action,
            approval_timeout=approval_timeout or DEFAULT_APPROVAL_TIMEOUT_S,
            timeout=timeout,
        )

    def _policy(self) -> MeshPolicy | None:
        """The policy ``call`` and ``tool`` check before sending (None: none loaded; the
        receivers, the gateway and the servers check anyway)."""
        return None

    async def emit(self, kind: str, detail: str = "") -> None:
        """Record a custom event (``kind`` like ``critique`` or ``note``) in the workflow."""
        await self.emit_event(kind, detail=detail)
