"""The context a handler gets when it runs again against a workflow's recorded history.

It has the interface of the real :class:`~jetmesh.Context` (same step keys, ``gather``,
``log``, ``memory``), but nothing leaves the process: a call is answered with the reply
recorded for its step key, ``once`` returns the recorded result without running the
effect, events are kept in a list, and memory lives under a scratch prefix that the re-run
deletes when it is done.

Where the new code asks for something the history does not have (a call to another agent,
a call or an effect that was never made), the context records a :class:`Divergence` and
stops the handler: it has no recorded answer to give.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from .._exceptions import MeshTimeout, ModelError, ModelUnavailable, SignalTimeout
from ..calls import decode_reply
from ..envelope import Envelope
from ..identity.tokens import Caller
from ..models import ModelReply, ModelRequest, request_digest
from ..models.base import changed_parts
from ..policy.model import Policy
from ..runtime.context_base import Authority, ContextBase, MemorySpace
from ..runtime.limits import PlanLimits
from ..runtime.streaming import ChunkFeed
from ..signals import ReceivedSignal, Signal
from .history import Payload, TaskHistory

T = TypeVar("T")

TARGET = "target"
"""A call went to another agent than the recorded one at the same place."""
BODY = "body"
"""A call sent another body than the recorded one."""
EXTRA_CALL = "extra-call"
"""A call the history does not have."""
MISSING_CALL = "missing-call"
"""A recorded call that the new code did not make."""
EXTRA_EFFECT = "extra-effect"
"""A side effect (``ctx.once``) the history does not have."""
MISSING_EFFECT = "missing-effect"
"""A recorded side effect that the new code did not ask for."""
EXTRA_SIGNAL = "extra-signal"
"""A wait for a signal (``ctx.wait_for``) the history does not have."""
EXTRA_MODEL = "extra-model"
"""A model call (``ctx.model``) the history does not have."""
MISSING_MODEL = "missing-model"
"""A recorded model call that the new code did not make."""
PROMPT = "prompt"
"""A model call asked another request (prompt, system, limits) than the recorded one."""
FULL = 1 << 20
"""A body's preview in a divergence is whole (up to 1 MiB): the reader cuts it to its width."""

RESULT = "result"
"""The handler returned another result."""
OUTCOME = "outcome"
"""The handler failed where it had completed, or completed where it had failed."""
INPUT = "input"
"""The recorded input no longer reaches a handler (no handler for its type, or it does not
decode into the handler's input type)."""


@dataclass(frozen=True)
class Divergence:
    """Where a re-run differs from the recorded run."""

    step: str
    """The task's step, or the callee's step for a call."""
    what: str
    """One of the constants of this module (``target``, ``body``, ``result``, ...)."""
    detail: str
    expected: str = ""
    """What the history holds (for a body or a result: its type and whole JSON)."""
    got: str = ""
    """What the re-run did instead."""
    changes: tuple[str, ...] = ()
    """For a body or a result: each field that changed, ``path: before -> after``."""


class Stopped(BaseException):
    """Ends a handler's re-run where the history has no answer for it. A BaseException, so
    that a handler's ``except Exception`` does not swallow it."""


class ReplayContext(ContextBase):
    """A handler's context answered from one task's recorded history."""

    def __init__(
        self,
        recorded: TaskHistory,
        task: Envelope,
        caller: Caller,
        *,
        space: MemorySpace,
        concurrency: int = 8,
        limits: PlanLimits | None = None,
        grant: Iterable[str] = (),
        policy: Policy | None = None,
    ) -> None:
        super().__init__(
            task,
            caller,
            agent=recorded.agent,
            attempt=max(recorded.node.attempts, 1),
            concurrency=concurrency,
            limits=limits,
            grant=grant,
        )
        self.recorded = recorded
        self._space = space
        self._mesh_policy = policy
        self.divergences: list[Divergence] = []
        self.incomplete = ""
        """Why the re-run could not go on although nothing diverged (a reply or effect
        result the history lacks)."""
        self.events: list[tuple[str, dict[str, Any]]] = []
        """Events the handler emitted, kept here instead of being published."""
        self.asked_calls: set[str] = set()
        self.asked_effects: set[str] = set()
        self.asked_models: set[str] = set()
        self.stopped = False
        """The handler was stopped where the history has no answer for it."""

    def _memory_space(self) -> MemorySpace:
        return self._space

    def _policy(self) -> Policy | None:
        """The mesh's policy, as the live run checked it (a tool it makes irreversible asks
        for a person's approval again, answered from the recorded signal)."""
        return self._mesh_policy

    def _diverged(
        self,
        step: str,
        what: str,
        detail: str,
        expected: str = "",
        got: str = "",
        changes: tuple[str, ...] = (),
    ) -> None:
        self.divergences.append(Divergence(step, what, detail, expected, got, changes))

    def _stop(self, why: str, *, incomplete: bool = False) -> Stopped:
        """Stop the handler here: it diverged (already recorded), or, when ``incomplete``,
        the history lacks what it needs (``why``)."""
        self.stopped = True
        if incomplete:
            self.incomplete = self.incomplete or why
        return Stopped(why)

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
        self.asked_calls.add(step)
        recorded = self.recorded.call(step)
        if recorded is None:
            number = int(step.rsplit(".", 1)[-1])
            instead = self.recorded.call_number(number)
            if instead is not None:
                self._diverged(
                    instead.step,
                    TARGET,
                    f"call {number} went to {agent} ({step}), the recorded one to {instead.target}",
                    expected=instead.target,
                    got=agent,
                )
            else:
                self._diverged(
                    step, EXTRA_CALL, f"call {number} to {agent} is not in the history", got=agent
                )
            raise self._stop(step)
        sent = Payload.of_value(body)
        was = recorded.sent
        if was is not None and was.body is not None and not sent.same_as(was):
            self._diverged(
                step,
                BODY,
                f"call to {agent} sent another body",
                expected=was.preview(FULL),
                got=sent.preview(FULL),
                changes=tuple(was.changes_to(sent)),
            )
        reply = recorded.reply
        if reply is None:  # the recorded call got no reply: it timed out
            raise MeshTimeout(f"no reply from {agent} in the recorded run")
        if reply.body is None:
            raise self._stop(f"the reply to {step} was {reply.missing}", incomplete=True)
        if feed is not None:  # a streamed call: the chunks its callee streamed then
            for chunk in recorded.chunks:
                feed.put(chunk)
        return decode_reply(agent, reply.as_reply().as_envelope(self.task), returns)

    async def _complete(self, request: ModelRequest, step: str, stream: bool) -> ModelReply:
        """The recorded reply of the model call ``step``; no model is asked, and nothing
        streams."""
        self.asked_models.add(step)
        recorded = self.recorded.model(step)
        if recorded is None:
            number = step.rsplit(".", 1)[-1]
            self._diverged(step, EXTRA_MODEL, f"model call {number} is not in the history")
            raise self._stop(step)
        digest = request_digest(request)
        if recorded.digest and recorded.digest != digest:
            parts = changed_parts(recorded.digest, digest)
            asked = request.messages[-1].content.replace("\n", " ")
            asked = asked if len(asked) <= 60 else asked[:57] + "..."
            shown = f", last turn {asked!r}" if "messages" in parts else ""
            self._diverged(
                step,
                PROMPT,
                f"the request's {' and '.join(parts)} changed (the recorded reply is used)",
                expected=f"request {recorded.digest}",
                got=f"request {digest}{shown}",
            )
        if recorded.reply is None:  # every recorded try failed: fail the same way
            error = ModelUnavailable if recorded.reason == ModelUnavailable.code else ModelError
            raise error(recorded.provider, f"as recorded: {recorded.error}")
        if recorded.reply.body is None:
            raise self._stop(f"the reply to {step} was {recorded.reply.missing}", incomplete=True)
        return msgspec.json.decode(recorded.reply.body, type=ModelReply)

    async def once(
        self,
        key: str,
        effect: Callable[[], Awaitable[T]],
        *,
        returns: type[T],
        reconcile: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """The recorded result of the effect ``key``; the effect is never run."""
        self.asked_effects.add(key)
        recorded = self.recorded.effects.get(key)
        if recorded is None:
            self._diverged(
                self.step, EXTRA_EFFECT, f"ctx.once({key!r}) is not in the history: not run"
            )
            raise self._stop(key)
        if recorded.body is None:
            raise self._stop(
                f"the result of effect {key!r} was {recorded.missing}", incomplete=True
            )
        return msgspec.json.decode(recorded.body, type=returns)

    async def wait_for(self, name: str, *, returns: type[T], timeout: float) -> Signal[T]:
        """The recorded signal ``name``; nothing is waited for. A wait the recorded run
        began and never got its signal for raises ``SignalTimeout``, as it did then."""
        recorded = self.recorded.signals.get(name)
        if recorded is None and name in self.recorded.waits:
            raise SignalTimeout(name, f"no signal {name!r} in the recorded run")
        if recorded is None:
            self._diverged(self.step, EXTRA_SIGNAL, f"ctx.wait_for({name!r}) is not in the history")
            raise self._stop(name)
        if recorded.body is None:
            raise self._stop(f"the signal {name!r} was {recorded.missing}", incomplete=True)
        return msgspec.json.decode(recorded.body, type=ReceivedSignal).decode(name, returns)

    async def stream(self, chunk: Any) -> bool:
        """Nothing: a re-run streams nothing to anyone (the recorded run's chunks are in
        its log)."""
        return False

    async def emit_event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    def unasked(self) -> None:
        """Record the recorded calls and effects that the handler did not ask for."""
        for call in self.recorded.calls:
            if call.step not in self.asked_calls:
                self._diverged(
                    call.step,
                    MISSING_CALL,
                    f"the recorded call to {call.target} was not made",
                    expected=call.target,
                )
        for model in self.recorded.models:
            if model.step not in self.asked_models:
                self._diverged(
                    model.step,
                    MISSING_MODEL,
                    f"the recorded model call to {model.model or model.provider} was not made",
                    expected=model.model,
                )
        for key in self.recorded.effects:
            if key not in self.asked_effects:
                self._diverged(
                    self.step,
                    MISSING_EFFECT,
                    f"the recorded effect {key!r} was not asked for",
                    expected=key,
                )
