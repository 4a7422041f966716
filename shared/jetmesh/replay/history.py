"""A workflow's history, rebuilt from its verified events: per task, what went in, what it
called and got back, which side effects it recorded, and what came out.

Example:
    >>> async with cli_client(settings) as mesh:                      # doctest: +SKIP
    ...     recorded = await history(mesh, workflow)
    >>> [(t.agent, t.step, t.status) for t in recorded.tasks()]      # doctest: +SKIP
    [('triage', 'triage', 'completed'), ('billing', 'triage/billing.1', 'completed')]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from .. import events as ev
from .._exceptions import Malformed
from ..client import MeshClient
from ..envelope import type_name
from ..event_log import LoggedEvent, TaskNode, build_tree, read_settled
from ..identity.tokens import Caller
from ..runtime.ledger import Recorded
from ..runtime.streaming import Chunk, chunk_of
from .diff import field_changes


@dataclass(frozen=True)
class Payload:
    """A body as an event recorded it."""

    type: str
    body: msgspec.Raw | None
    """None when it was not recorded (see :attr:`missing`)."""
    omitted: bool = False
    """Left out: the event would have exceeded the maximum payload."""
    error: str = ""
    """For a reply: the error's reason code when the call was answered with an error."""

    @classmethod
    def of_event(cls, event: ev.Event) -> Payload:
        recorded = event.body
        if recorded is None:  # an event written before bodies were recorded
            return cls("", None)
        value = None if recorded.omitted else recorded.value
        error = event.reason if event.kind == ev.REPLY else ""
        return cls(recorded.type, value, recorded.omitted, error)

    @classmethod
    def of_value(cls, value: object) -> Payload:
        """The payload a handler's value would be sent as."""
        if isinstance(value, msgspec.Raw):
            return cls(type_name(type(value)), value)
        return cls(type_name(type(value)), msgspec.Raw(msgspec.json.encode(value)))

    @property
    def missing(self) -> str:
        """Why the body is not there ("" when it is)."""
        if self.body is not None:
            return ""
        return "omitted: over the maximum payload" if self.omitted else "not recorded"

    def as_reply(self) -> Recorded:
        """As the step ledger records a reply (to decode it the way a call does)."""
        assert self.body is not None
        return Recorded(kind="error" if self.error else "reply", type=self.type, body=self.body)

    def same_as(self, other: Payload) -> bool:
        """Same type and the same JSON value (key order and spacing aside)."""
        if self.body is None or other.body is None:
            return False
        return self.type == other.type and _json(self.body) == _json(other.body)

    def changes_to(self, other: Payload) -> list[str]:
        """The fields ``other`` changed, as :func:`~jetmesh.replay.diff.field_changes` lists
        them (a change of type first); none when either body is missing."""
        if self.body is None or other.body is None:
            return []
        changed = [f"type: {self.type} -> {other.type}"] if self.type != other.type else []
        return changed + field_changes(_json(self.body), _json(other.body))

    def preview(self, width: int = 60) -> str:
        """``type {json}``, cut to ``width`` characters of JSON."""
        if self.body is None:
            return f"{self.type or '?'} ({self.missing})"
        text = bytes(self.body).decode("utf-8", "replace")
        if len(text) > width:
            text = text[: width - 3] + "..."
        return f"{self.type} {text}" if self.type else text


def _json(raw: msgspec.Raw) -> object:
    return msgspec.json.decode(raw)


@dataclass
class RecordedCall:
    """A call a task made (``ctx.call``): to whom, at which step, with what, and the reply."""

    step: str
    """The callee's step key (``<task step>/<agent>.<n>``)."""
    target: str
    sent: Payload | None = None
    reply: Payload | None = None
    """The caller's ``reply`` event's, else its callee's result (its ``completed``
    event); None when neither was recorded (the call timed out, or never returned)."""
    duration_ms: float | None = None
    called_at: float | None = None
    """When its first ``call`` event was written (Unix time)."""
    unanswered: str = ""
    """Why its caller's last run that sent it went on without a reply (``timeout``,
    ``cancelled``); "" if not."""
    unanswered_attempt: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    """The chunks the callee streamed (its task's), in index order."""

    @property
    def number(self) -> int:
        """The ``n`` of the step key: the call's place among the task's calls (0 if none)."""
        tail = self.step.rsplit(".", 1)[-1]
        return int(tail) if tail.isdigit() else 0


@dataclass
class RecordedModel:
    """A model call a task made (``ctx.model``), from its ``model`` events."""

    step: str
    """The call's step key (``<task step>/model.<n>``)."""
    provider: str = ""
    model: str = ""
    digest: str = ""
    """The request's digest (a re-run compares its own)."""
    reply: Payload | None = None
    """The model's reply (a ``mesh.ModelReply/1``); None when every try failed."""
    error: str = ""
    """``reason: detail`` of the failure when no try succeeded."""
    reason: str = ""
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    duration_ms: float | None = None


@dataclass
class TaskHistory:
    """One task (hop) of a workflow as recorded."""

    node: TaskNode
    """The task's node in the event tree: agent, step, status, timings, its events."""
    input: Payload | None = None
    calls: list[RecordedCall] = field(default_factory=list)
    effects: dict[str, Payload] = field(default_factory=dict)
    """Results of ``ctx.once`` by key."""
    signals: dict[str, Payload] = field(default_factory=dict)
    """Signals received by ``ctx.wait_for``, by name."""
    waits: set[str] = field(default_factory=set)
    """Names of the signals ``ctx.wait_for`` waited for (received or not)."""
    models: list[RecordedModel] = field(default_factory=list)
    """Model calls (``ctx.model``), in order."""
    result: Payload | None = None
    identity: Caller | None = None
    chunks: list[Chunk] = field(default_factory=list)
    """The chunks it streamed (``ctx.stream``), in index order, each once."""
    children: list[TaskHistory] = field(default_factory=list)

    @property
    def agent(self) -> str:
        return self.node.agent

    @property
    def step(self) -> str:
        return self.node.step

    @property
    def status(self) -> str:
        return self.node.status

    def call(self, step: str) -> RecordedCall | None:
        return next((c for c in self.calls if c.step == step), None)

    def call_number(self, number: int) -> RecordedCall | None:
        return next((c for c in self.calls if c.number == number), None)

    def model(self, step: str) -> RecordedModel | None:
        return next((m for m in self.models if m.step == step), None)


@dataclass
class WorkflowHistory:
    """A workflow's tasks as a tree; roots are the ``accepted`` entries of ingress (their
    ``node.task`` is None) or tasks whose caller's events are missing."""

    workflow: str
    roots: list[TaskHistory]

    def tasks(self) -> Iterator[TaskHistory]:
        """Every task, callers before the tasks they called (ingress entries left out)."""

        def walk(items: list[TaskHistory]) -> Iterator[TaskHistory]:
            for item in items:
                if item.node.task is not None:
                    yield item
                yield from walk(item.children)

        return walk(self.roots)


async def history(mesh: MeshClient, workflow: str, *, timeout: float = 5.0) -> WorkflowHistory:
    """Read ``workflow``'s events (verified, waiting up to ``timeout`` for running tasks
    to settle) and rebuild its history."""
    return history_of(workflow, await read_settled(mesh, workflow, timeout=timeout))


def history_of(workflow: str, logged: list[LoggedEvent]) -> WorkflowHistory:
    """Rebuild a workflow's history from its events, in stream order. Only verified events
    whose signer is the agent they name count (see :func:`jetmesh.event_log.build_tree`):
    a forged result, call or reply is never replayed."""
    inputs: dict[str, Payload] = {}
    for item in logged:  # a task's input is what its caller sent (or ingress accepted)
        if not item.verified:  # forged or unverifiable: never replayed
            continue
        e = item.event
        if e.kind == ev.CALL and e.callee_step:
            inputs.setdefault(e.callee_step, Payload.of_event(e))
        elif e.kind == ev.ACCEPTED:
            inputs[e.step] = Payload.of_event(e)

    def shape(node: TaskNode) -> TaskHistory:
        task = TaskHistory(node, input=inputs.get(node.step))
        for item in node.events:
            _record(task, item)
        task.children = [shape(child) for child in node.children]
        task.chunks.sort(key=lambda c: c.index)
        for child in task.children:
            if (call := task.call(child.step)) is not None and child.agent == call.target:
                call.chunks = child.chunks  # a streamed call's chunks, for the caller's re-run
                _answered_by(call, child)
        return task

    return WorkflowHistory(workflow, [shape(root) for root in build_tree(logged)])


def _record(task: TaskHistory, item: LoggedEvent) -> None:
    if not item.verified:  # forged (another signer than its agent) or unverifiable
        return
    e = item.event
    task.identity = task.identity or item.identity
    if e.kind in (ev.CALL, ev.REPLY):
        _record_call(task, e)
    elif e.kind == ev.MODEL:
        _record_model(task, e)
    elif e.kind == ev.EFFECT:
        task.effects[e.key] = Payload.of_event(e)
    elif e.kind == ev.SIGNALLED:
        task.signals[e.key] = Payload.of_event(e)
    elif e.kind == ev.WAITING:
        task.waits.add(e.key)
    elif e.kind == ev.COMPLETED:
        task.result = Payload.of_event(e)
    elif e.kind == ev.CHUNK and e.step == task.step:
        try:
            chunk = chunk_of(e)
        except Malformed:
            return
        if all(c.index != chunk.index for c in task.chunks):
            task.chunks.append(chunk)


def _record_call(task: TaskHistory, e: ev.Event) -> None:
    """A ``call`` event, or the caller's ``reply`` (an error, no reply, or a re-run's answer
    from its journal), merged with the same call's events of other runs."""
    call = task.call(e.callee_step)
    if call is None:
        call = RecordedCall(e.callee_step, e.target or "")
        task.calls.append(call)
        task.calls.sort(key=lambda c: c.number)
    if e.kind == ev.CALL:
        call.sent = call.sent or Payload.of_event(e)
        call.called_at = e.at if call.called_at is None else call.called_at
        if e.attempt > call.unanswered_attempt:  # a later run sent it again
            call.unanswered = ""
    elif e.body is None and e.reason in (ev.TIMED_OUT, ev.CANCELLED):
        call.unanswered, call.unanswered_attempt = e.reason, e.attempt  # went on without
        call.duration_ms = e.duration_ms
    else:  # a re-run after a crash says it again, from the journal: same reply
        call.reply = Payload.of_event(e)
        call.duration_ms = e.duration_ms if e.duration_ms is not None else call.duration_ms


def _answered_by(call: RecordedCall, callee: TaskHistory) -> None:
    """A call answered with a result: the log holds it once, in the callee's ``completed``
    event (signed by the callee, verified by :func:`~jetmesh.event_log.build_tree`); the
    caller writes a ``reply`` event only for an error, for no reply (a timeout: then the
    callee's result, if it came late, is not the call's) or without a step ledger
    (:meth:`jetmesh.runtime.context.Context._call`). Its time is from the ``call`` event
    to that ``completed`` (written just after the reply was sent)."""
    if call.reply is not None or call.unanswered or callee.result is None:
        return
    call.reply = callee.result
    done = [e.event.at for e in callee.node.events if e.verified and e.event.kind == ev.COMPLETED]
    if call.called_at is not None and done:
        call.duration_ms = max(0.0, (min(done) - call.called_at) * 1000)


def _record_model(task: TaskHistory, e: ev.Event) -> None:
    """A model call's event: an answer (first asked, or from the journal on a re-run: the
    same reply) wins over the failures of earlier tries."""
    call = task.model(e.callee_step)
    if call is None:
        call = RecordedModel(e.callee_step)
        task.models.append(call)
    if e.body is None:  # a failed try
        if call.reply is None:
            call.provider, call.model, call.digest = e.target or "", e.model, e.digest
            call.reason, call.error = e.reason, f"{e.reason}: {e.detail}"
        return
    if call.reply is not None:  # the journal's answer, told again by a re-run
        return
    call.provider, call.model, call.digest = e.target or "", e.model, e.digest
    call.reply, call.error, call.reason = Payload.of_event(e), "", ""
    call.tokens_in, call.tokens_out, call.cost_usd = e.tokens_in, e.tokens_out, e.cost_usd
    call.duration_ms = e.duration_ms
