"""Reading a workflow's events back from MESH_EVENTS, verified, and shaping them as a tree.

The tree has one node per task (hop). A node's children are the tasks it called, found
through the task ids that events record (``task`` and ``parent``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from . import events as ev
from ._exceptions import RejectedMessage
from .bus.direct import Stored, read_from
from .envelope import decode_body, decode_envelope
from .identity.tokens import Caller
from .mesh_protocols import EventLogReading

__all__ = [
    "LoggedEvent",
    "ModelUsage",
    "TaskNode",
    "build_tree",
    "read_events",
    "read_settled",
    "total_usage",
    "verify_event",
]


@dataclass(frozen=True)
class LoggedEvent:
    """An event read from the log, with the outcome of its signature check."""

    event: ev.Event
    workflow: str
    signer: str
    verified: bool
    problem: str = ""
    caller: str = ""
    identity: Caller | None = None
    """The verified caller the event's work ran for (None if it acts for no caller)."""


def usd(amount: float | None) -> str:
    """``$0.00000675``: US dollars to the hundredth of a micro-dollar ("$?" when unknown)."""
    if amount is None:
        return "$?"
    return "$" + (f"{amount:.8f}".rstrip("0").rstrip(".") or "0")


@dataclass
class ModelUsage:
    """What a task's model calls (``ctx.model``) took: each call counted once, although a
    re-run after a crash records it again (from the journal)."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    """Calls of a model the price table lacks (their cost is not in ``cost_usd``)."""
    steps: set[str] = field(default_factory=set)

    def add(self, event: ev.Event) -> None:
        if event.body is None or event.callee_step in self.steps:
            return  # a failed try, or a call already counted
        self.steps.add(event.callee_step)
        self.calls += 1
        self.tokens_in += event.tokens_in or 0
        self.tokens_out += event.tokens_out or 0
        if event.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += event.cost_usd

    def merge(self, other: ModelUsage) -> None:
        self.calls += other.calls
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cost_usd += other.cost_usd
        self.unpriced += other.unpriced

    def __str__(self) -> str:
        cost = usd(self.cost_usd)
        unknown = f" (+{self.unpriced} unpriced)" if self.unpriced else ""
        calls = f"{self.calls} model call{'s' if self.calls != 1 else ''}"
        return f"{calls}: {self.tokens_in} tokens in, {self.tokens_out} out, {cost}{unknown}"


@dataclass
class TaskNode:
    """One hop of a workflow: a task and what happened to it."""

    task: str | None
    parent: str | None = None
    agent: str = ""
    step: str = ""
    type: str = ""
    caller: str = ""
    duration_ms: float | None = None
    status: str = "pending"
    verified: bool = True
    attempts: int = 0
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    """Custom events the handler emitted (``ctx.emit``), as ``kind: detail``."""
    usage: ModelUsage = field(default_factory=ModelUsage)
    """Its model calls' tokens and cost."""
    answered_again: int = 0
    """How many times its recorded result was sent again without running the handler."""
    children: list[TaskNode] = field(default_factory=list)
    events: list[LoggedEvent] = field(default_factory=list)


async def read_events(
    mesh: EventLogReading, workflow: str, *, timeout: float = 5.0
) -> list[LoggedEvent]:
    """All events of ``workflow`` stored so far, in stream order, each verified (signature,
    signer, caller). Read by direct gets (:mod:`jetmesh.bus.direct`), no consumer: a role
    may not create one. ``timeout`` bounds the whole read."""
    subject = mesh.subjects.workflow_events(workflow)
    out: list[LoggedEvent] = []
    async with asyncio.timeout(timeout):
        async for stored in read_from(mesh, mesh.settings.events_stream, subject):
            out.append(await verify_event(mesh, stored))
    return out


async def read_settled(
    mesh: EventLogReading, workflow: str, *, timeout: float = 5.0
) -> list[LoggedEvent]:
    """Like :func:`read_events`, but re-reads (for up to ``timeout``) while some task has
    started and not yet finished: agents publish events asynchronously."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        logged = await read_events(mesh, workflow)
        unsettled = any(_open(n) for n in build_tree(logged))
        if not unsettled or asyncio.get_running_loop().time() > deadline:
            return logged
        await asyncio.sleep(0.05)


def _open(node: TaskNode) -> bool:
    """Still running, or it called a task whose own events are not stored yet (agents
    publish events asynchronously, so a finished callee can lag behind its caller's)."""
    called = {e.event.callee_step for e in node.events if e.event.kind == ev.CALL}
    logged = {c.step for c in node.children}
    return (
        node.status in ("pending", "running", "retrying")
        or bool(called - logged)
        or any(_open(c) for c in node.children)
    )


async def verify_event(mesh: EventLogReading, stored: Stored) -> LoggedEvent:
    """One stored event, verified: its signature, its caller token, and that its signer is
    the agent it names (a forged one is returned unverified, with the problem)."""
    try:
        verified = await mesh.verify(stored, stored_at=stored.stored_at, audit=True)
    except RejectedMessage as exc:
        env = decode_envelope(stored.data)
        return LoggedEvent(
            decode_body(env, ev.Event), env.workflow, env.sender, False, problem=exc.reason
        )
    body = decode_body(verified.envelope, ev.Event)
    signer = verified.certificate.name
    if body.agent != signer:  # the signer is who said it, whatever the body claims
        return LoggedEvent(
            body,
            verified.envelope.workflow,
            signer,
            False,
            problem=f"forged: signed by {signer}, names {body.agent}",
        )
    caller = verified.caller.subject if verified.caller else ""
    return LoggedEvent(
        body,
        verified.envelope.workflow,
        verified.certificate.name,
        True,
        caller=caller,
        identity=verified.caller,
    )


def build_tree(events: list[LoggedEvent]) -> list[TaskNode]:
    """Arrange events into task nodes; returns the roots (tasks no other task caused)."""
    nodes: dict[str, TaskNode] = {}
    roots: list[TaskNode] = []
    called: dict[tuple[str | None, str], str] = {}
    """(caller's task, step) -> the role called there, from verified accepted events and
    the call events of each task's own role: a task belongs to the role it was sent to,
    whoever writes first about it."""
    for logged in events:
        e = logged.event
        if logged.verified and e.kind == ev.ACCEPTED:
            called.setdefault((None, e.step), e.target or "")
        if e.kind == ev.SIGNAL:  # not a task: the waiting task's ``signalled`` shows it
            continue
        key = e.task if e.kind != ev.ACCEPTED else None
        if key is None:
            _add_entry(roots, logged)
            continue
        if key not in nodes:
            addressee = called.get((e.parent, e.step), "")
            nodes[key] = TaskNode(task=key, parent=e.parent, agent=addressee, step=e.step)
        _apply(nodes[key], logged)
        if e.kind == ev.CALL and nodes[key].events[-1].verified:  # the task's own role's
            called.setdefault((key, e.callee_step), e.target or "")
    for node in nodes.values():
        _check_called(node, nodes.get(node.parent or ""), called)
    _link(roots, nodes)
    return roots


def _link(roots: list[TaskNode], nodes: dict[str, TaskNode]) -> None:
    """Put each task under the task (or ingress entry) that caused it, in call order, with
    what its attempts did noted."""
    for node in nodes.values():
        caused_by = nodes.get(node.parent or "")
        if caused_by is not None:
            caused_by.children.append(node)
        elif (started := _started_by(roots, node)) is not None:
            started.children.append(node)
        else:
            roots.append(node)
    for node in [*roots, *nodes.values()]:
        _note_sent_again(node.children)
    for node in nodes.values():
        _note_attempts(node, nodes.get(node.parent or ""))
    for node in nodes.values():  # calls made together log in any order: show the code's
        node.children.sort(key=_call_number)


def _add_entry(roots: list[TaskNode], logged: LoggedEvent) -> None:
    """An ingress's ``accepted`` event: a new root, or a note on the root it asks again."""
    e = logged.event
    asked = next((r for r in roots if _asks_again(r, logged)), None)
    if asked is not None:  # the same start asked again: one root, noted
        asked.events.append(logged)
        asked.verified = asked.verified and logged.verified
        asked.notes.append(f"asked again at {time.strftime('%H:%M:%S', time.gmtime(e.at))}")
        return
    node = TaskNode(
        task=None,
        agent=e.agent,
        step=e.step,
        type=e.type,
        status="accepted",
        caller=logged.caller or e.caller,
        detail=f"-> {e.target}",
    )
    node.events.append(logged)
    node.verified = logged.verified
    roots.append(node)


def _asks_again(root: TaskNode, logged: LoggedEvent) -> bool:
    """``logged`` (an ``accepted`` event) starts the same step at the same role as the
    ingress entry ``root``: a caller asking again in the same workflow."""
    first = root.events[0]
    return (
        root.task is None
        and first.signer == logged.signer
        and first.event.step == logged.event.step
        and first.event.target == logged.event.target
    )


def _started_by(roots: list[TaskNode], node: TaskNode) -> TaskNode | None:
    """The ingress entry that started ``node`` (a task without a logged caller): the one
    for its step, else the latest."""
    entries = [r for r in roots if r.task is None]
    return next((r for r in entries if r.step == node.step), entries[-1] if entries else None)


def _note_sent_again(children: list[TaskNode]) -> None:
    """Mark a task whose step an earlier sibling already had: the caller sent the step
    again (a re-ask, a re-run whose journal write was lost), answered from its record."""
    seen: set[str] = set()
    for child in children:
        if child.step in seen:
            child.notes.insert(0, "sent again: the same step")
        seen.add(child.step)


def _completed(node: TaskNode, e: ev.Event) -> None:
    if e.reason == ev.FROM_LEDGER:  # the handler did not run: keep the run's time
        node.answered_again += 1
    else:
        node.duration_ms = e.duration_ms
    node.status = "completed"
    node.type = node.type or e.type
    node.attempts = max(node.attempts, e.attempt)


def _note_attempts(node: TaskNode, caller: TaskNode | None) -> None:
    """Mark what a tree of one attempt would hide: a step answered from its record without
    running again, the time from its call (or first event) to its last answer when it took
    more than one attempt, and a step that finished after its caller had given up on it."""
    done = [e.event.at for e in node.events if e.verified and e.event.kind == ev.COMPLETED]
    if not done:
        return
    marks = []
    called = _called_at(node, caller)
    ran = [
        e.event.at
        for e in node.events
        if e.verified and e.event.kind == ev.COMPLETED and e.event.reason != ev.FROM_LEDGER
    ]
    gave_up = _timed_out_at(caller, node.step, after=called) if caller is not None else None
    if ran and gave_up is not None and min(ran) > gave_up:
        marks.append("finished after its caller's timeout")
    if node.attempts > 1:
        began = called if called is not None else min(e.event.at for e in node.events)
        marks.append(f"{max(done) - began:.1f} s from call to last answer")
    if node.answered_again:
        again = f" x{node.answered_again}" if node.answered_again > 1 else ""
        marks.append(f"answered from the ledger{again} (the handler did not run again)")
    after = 1 if node.notes and node.notes[0].startswith("sent again") else 0
    node.notes[after:after] = marks


def _called_at(node: TaskNode, caller: TaskNode | None) -> float | None:
    """When ``caller`` first logged the call of ``node``'s step."""
    if caller is None:
        return None
    return min(
        (
            e.event.at
            for e in caller.events
            if e.verified and e.event.kind == ev.CALL and e.event.callee_step == node.step
        ),
        default=None,
    )


def _timed_out_at(caller: TaskNode, step: str, *, after: float | None) -> float | None:
    """When ``caller`` first gave up waiting for its call of ``step`` after ``after``: its
    ``reply`` event for that step with reason ``timeout`` (also when its handler caught
    the timeout and went on). A log written before callers logged their timeouts has
    none: then the caller's first ``MeshTimeout`` that retried or failed its task."""
    timeouts = [
        e.event
        for e in caller.events
        if e.verified and e.event.kind == ev.REPLY and e.event.reason == ev.TIMED_OUT
    ]
    if timeouts:
        logged = (e.at for e in timeouts if e.callee_step == step)
    else:
        logged = (
            e.event.at
            for e in caller.events
            if e.verified
            and e.event.kind in (ev.RETRIED, ev.FAILED)
            and "MeshTimeout" in f"{e.event.reason} {e.event.detail}"
        )
    return min((at for at in logged if after is None or at >= after), default=None)


def _call_number(node: TaskNode) -> int:
    """The ``n`` of a step key ``caller/role.n`` (the call's place among its caller's calls)."""
    tail = node.step.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def total_usage(roots: list[TaskNode]) -> ModelUsage:
    """The model calls of every task in the tree, added up."""
    total = ModelUsage()
    pending = list(roots)
    while pending:
        node = pending.pop()
        total.merge(node.usage)
        pending.extend(node.children)
    return total


_RAN = frozenset({ev.STARTED, ev.COMPLETED})
_FINISHED = frozenset({"completed", ev.FAILED, ev.REJECTED})


def _check_called(
    node: TaskNode, caller: TaskNode | None, called: dict[tuple[str | None, str], str]
) -> None:
    """A hop that ran is shown as verified only if the task that caused it logged the
    call (its step and its target): events cannot add a hop nobody asked for."""
    if caller is None or not any(e.event.kind in _RAN for e in node.events):
        return
    if called.get((node.parent, node.step)) != node.agent:
        node.verified = False
        node.detail = node.detail or (
            f"forged: {caller.agent} logged no call to {node.agent} at step {node.step}"
        )


def _apply(node: TaskNode, logged: LoggedEvent) -> None:
    """Add ``logged`` to ``node``. The node belongs to the role its caller sent it to
    (else to the signer of its first verified event); an event signed by anyone else, or
    not verified, is kept (shown as forged or unverified) but changes nothing: not the
    status, not the usage, not the notes."""
    e = logged.event
    if logged.verified and not node.agent:
        node.agent = logged.signer
    if logged.verified and logged.signer != node.agent:
        logged = LoggedEvent(
            e,
            logged.workflow,
            logged.signer,
            False,
            problem=f"forged: signed by {logged.signer} in {node.agent}'s task",
        )
    node.events.append(logged)
    node.verified = node.verified and logged.verified
    if not logged.verified:
        node.agent = node.agent or e.agent
        return
    node.caller = node.caller or logged.caller or e.caller
    if e.kind == ev.STARTED:
        node.attempts = max(node.attempts, e.attempt)
        node.type = node.type or e.type
        if node.status not in _FINISHED:  # a started stored late (its publish waited out
            node.status = "running"  # a restart) does not reopen a finished task
    elif e.kind == ev.COMPLETED:
        _completed(node, e)
    elif e.kind in (ev.FAILED, ev.REJECTED):
        node.status = e.kind
        node.detail = f"{e.reason}: {e.detail}"
    elif e.kind == ev.MODEL:
        node.usage.add(e)
    elif e.kind == ev.SIGNALLED:
        node.notes.append(f"signalled: {e.key} {e.detail}".strip())
    elif e.kind == ev.RETRIED and node.status != "completed":
        node.status = "retrying"
        node.detail = f"{e.reason}: {e.detail}"
    elif e.kind not in ev.KINDS:
        note = f"{e.kind}: {e.detail}" if e.detail else e.kind
        if note not in node.notes:  # a handler run again emits its events again
            node.notes.append(note)
