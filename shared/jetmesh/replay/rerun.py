"""Running a workflow's tasks again with the current handler code, against its history.

Each recorded task of a given agent runs once more, in this process, on its recorded input,
with a :class:`~jetmesh.replay.context.ReplayContext`: calls are answered with the recorded
replies, side effects with their recorded results, and nothing is published; what
``ctx.call`` and ``ctx.tool`` check before sending is the mesh's policy
(``settings.policy_file``), as in the live run, so a tool it makes irreversible waits for
the recorded approval again. The report
says, per task, whether the new code made the same calls with the same bodies and returned
the same result, and where it did not. Tasks are replayed one by one, each against its own
history (a callee's input is what its caller sent in the recorded run), callers first.

Example:
    >>> report = await rerun(recorded, [triage.agent], redis=redis, settings=settings)
    ...                                                               # doctest: +SKIP
    >>> report.diverged                                               # doctest: +SKIP
    False
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import msgspec
from redis.asyncio import Redis

from .._exceptions import Reject, SchemaViolation
from ..envelope import Envelope
from ..identity.tokens import Caller
from ..memory import keys
from ..policy.model import Policy, policy_of
from ..runtime.agent import Agent, Handler
from ..runtime.context_base import MemorySpace
from ..runtime.limits import PlanLimits
from ..settings import MeshSettings
from ..telemetry import traces
from .context import FULL, INPUT, OUTCOME, RESULT, Divergence, ReplayContext
from .history import Payload, TaskHistory, WorkflowHistory

SAME = "same"
DIVERGED = "diverged"
SKIPPED = "skipped"
"""Not re-run (its agent was not given, or its input was not recorded), or stopped where
the history lacks an answer."""

DEFAULT_TIMEOUT_S = 30.0
"""How long one task's re-run may take."""


@dataclass
class TaskReplay:
    """The outcome of one task's re-run."""

    step: str
    agent: str
    status: str = SAME
    divergences: list[Divergence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calls: int = 0
    """Calls answered from the history."""
    effects: int = 0
    """Side effects answered from the history (none was run)."""
    models: int = 0
    """Model calls answered from the history (no model was asked)."""
    events: list[str] = field(default_factory=list)
    """Kinds of the events the handler emitted (kept, not published)."""


@dataclass
class RerunReport:
    workflow: str
    tasks: list[TaskReplay] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return any(t.status == DIVERGED for t in self.tasks)


@dataclass(frozen=True)
class _Outcome:
    value: Payload | None = None
    raised: str = ""
    """``Type: message`` of what the handler raised ("" if it returned)."""


async def rerun(
    recorded: WorkflowHistory,
    agents: Sequence[Agent],
    *,
    redis: Redis,
    settings: MeshSettings,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> RerunReport:
    """Run the current handlers of ``agents`` on every recorded task of theirs.

    Working memory is a scratch namespace (``<prefix>:replay:<run>:...``) shared by the
    re-run's tasks in order and deleted at the end: the workflow's own memory is neither
    read nor written. Nothing is sent to NATS.

    Args:
        recorded: the workflow's history (see :func:`~jetmesh.replay.history.history`).
        agents: the agents whose code runs again; other agents' tasks are skipped.
        redis: where the scratch memory lives.
        settings: the mesh's settings (key prefix, memory limits).
        timeout: seconds one task's re-run may take.
    """
    by_name = {agent.name: agent for agent in agents}
    scratch = keys.replay_scratch(settings.subject_prefix)
    space = MemorySpace(redis, scratch, settings.memory_ttl_s, settings.memory_max_value_bytes)
    report = RerunReport(recorded.workflow)
    policy = policy_of(settings.policy_file)  # what ctx.call and ctx.tool check, as live
    limits = PlanLimits.of(settings)
    try:
        for task, sender in _with_senders(recorded.roots, ""):
            agent = by_name.get(task.agent)
            if agent is None:
                report.tasks.append(
                    TaskReplay(task.step, task.agent, SKIPPED, notes=["agent not given"])
                )
                continue
            envelope = _task_envelope(recorded.workflow, task, sender)
            report.tasks.append(
                await _rerun_task(task, envelope, agent, space, limits, policy, timeout)
            )
    finally:
        await _delete(redis, f"{scratch}:*")
    return report


def _with_senders(items: list[TaskHistory], sender: str) -> Iterator[tuple[TaskHistory, str]]:
    """Tasks callers first, each with the agent that sent it."""
    for item in items:
        if item.node.task is not None:
            yield item, sender
        yield from _with_senders(item.children, item.agent)


def _task_envelope(workflow: str, task: TaskHistory, sender: str) -> Envelope:
    """The task as its handler saw it, from the recorded events (unsigned: it is never sent)."""
    body = task.input.body if task.input is not None else None
    return Envelope(
        id=task.node.task or "",
        kind="task",
        workflow=workflow,
        sender=sender,
        to=task.agent,
        created=task.node.events[0].event.at if task.node.events else 0.0,
        type=task.input.type if task.input is not None else task.node.type,
        parent=task.node.parent,
        step=task.step,
        body=body if body is not None else msgspec.Raw(b"null"),
    )


def _caller(task: TaskHistory) -> Caller:
    if task.identity is not None:
        return task.identity
    return Caller(task.node.caller, "", frozenset(), 0.0, "", "")


async def _rerun_task(
    task: TaskHistory,
    envelope: Envelope,
    agent: Agent,
    space: MemorySpace,
    limits: PlanLimits,
    policy: Policy | None,
    timeout: float,
) -> TaskReplay:
    out = TaskReplay(task.step, task.agent)
    if task.input is None or task.input.body is None:
        missing = task.input.missing if task.input is not None else "not recorded"
        out.status, out.notes = SKIPPED, [f"input {missing}"]
        return out
    try:
        handler = agent.handler_for(task.input.type)
        body = msgspec.json.decode(task.input.body, type=handler.input_type)
    except (SchemaViolation, msgspec.MsgspecError) as exc:
        out.status = DIVERGED
        out.divergences.append(Divergence(task.step, INPUT, str(exc), expected=task.input.type))
        return out
    ctx = ReplayContext(
        task,
        envelope,
        _caller(task),
        space=space,
        limits=limits,
        grant=agent.scopes,
        policy=policy,
    )
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent.name,
        "gen_ai.conversation.id": envelope.workflow,
        traces.REPLAYED: True,
    }
    with traces.span(f"invoke_agent {agent.name}", attributes):
        outcome = await _run(handler, body, ctx, timeout)
        traces.annotate({"jetmesh.replay.outcome": outcome.raised or "returned"})
    out.calls = len(ctx.asked_calls & {c.step for c in task.calls})
    out.effects = len(ctx.asked_effects & set(task.effects))
    out.models = len(ctx.asked_models & {m.step for m in task.models})
    out.events = [kind for kind, _ in ctx.events]
    if not ctx.stopped:
        ctx.unasked()
        _compare(task, outcome, ctx, out)
    elif ctx.incomplete:
        out.notes.append(f"stopped: {ctx.incomplete}")
    out.divergences = ctx.divergences
    out.status = DIVERGED if ctx.divergences else SKIPPED if ctx.incomplete else SAME
    return out


async def _run(handler: Handler, body: object, ctx: ReplayContext, timeout: float) -> _Outcome:
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            value = await handler(body, ctx)
    except Reject as exc:
        return _Outcome(raised=f"Reject: {exc.reason}")
    except Exception as exc:
        if timer.expired():
            return _Outcome(raised=f"timed out after {timeout:g} s")
        return _Outcome(raised=f"{type(exc).__name__}: {exc}")
    except BaseException:  # Stopped (alone, or in a gather's group): reported by ctx
        if not ctx.stopped:
            raise
        return _Outcome(raised="stopped")
    return _Outcome(value=Payload.of_value(value))


def _compare(task: TaskHistory, outcome: _Outcome, ctx: ReplayContext, out: TaskReplay) -> None:
    """The new outcome against the recorded one."""
    recorded = task.result
    if task.status == "completed":
        expected = recorded.preview() if recorded is not None else "a result"
        if outcome.value is None:
            ctx.divergences.append(
                Divergence(task.step, OUTCOME, "it failed", expected=expected, got=outcome.raised)
            )
        elif recorded is None or recorded.body is None:
            out.notes.append(
                f"result {recorded.missing if recorded is not None else 'not recorded'}: "
                "not compared"
            )
        elif not outcome.value.same_as(recorded):
            ctx.divergences.append(
                Divergence(
                    task.step,
                    RESULT,
                    "another result",
                    expected=recorded.preview(FULL),
                    got=outcome.value.preview(FULL),
                    changes=tuple(recorded.changes_to(outcome.value)),
                )
            )
    elif task.status in ("failed", "rejected"):
        if outcome.value is not None:
            ctx.divergences.append(
                Divergence(
                    task.step,
                    OUTCOME,
                    "it completed",
                    expected=f"{task.status}: {task.node.detail}",
                    got=outcome.value.preview(),
                )
            )
        else:
            out.notes.append(f"failed as recorded ({outcome.raised})")
    else:
        out.notes.append(f"the recorded run is {task.status}: outcome not compared")


async def _delete(redis: Redis, pattern: str) -> None:
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            await redis.delete(*batch)
            batch.clear()
    if batch:
        await redis.delete(*batch)
