"""What a run of the support mesh left behind, counted from the outside as an operator would:
refunds per order from the payment desk, tool runs per step from the gateway's ``tool``
events, dead letters from the dead-letter stream, open hops and unverified events from each
workflow's event log (read and verified as the admin).

Used by :mod:`loadtest.chaos_support`; each count is independent of the load's own tally.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from jetmesh import MeshClient, MeshSettings
from jetmesh import events as ev
from jetmesh.dead_letters import list_dead_letters, with_task
from jetmesh.event_log import LoggedEvent, TaskNode, build_tree, read_events
from jetmesh.logins import admin_login
from jetmesh.toolgate import TOOL
from services.support.systems import NAMESPACE, Desk
from services.support.wire import RefundReceipt

READERS = 8
"""Workflows whose events are read at once."""
DLQ_LIMIT = 100_000
FINAL = frozenset({ev.COMPLETED, ev.FAILED, ev.REJECTED})
"""Kinds of event that finish a hop, in whatever order the stream stored them."""


@dataclass
class Audit:
    """The counts; :attr:`problems` names each target missed."""

    orders: int = 0
    """Orders the load asked to refund."""
    paid: Counter[int] = field(default_factory=Counter)
    """Orders by the number of payouts the desk made for them (0, 1, 2, ...)."""
    paid_unexpected: int = 0
    """Payouts for orders the load never asked about."""
    desk_runs: Counter[int] = field(default_factory=Counter)
    """The desk's own counter per idempotency key: keys by how often a payout ran."""
    tool_runs: dict[str, Counter[int]] = field(default_factory=dict)
    """Per tool: gateway steps by the number of ``tool ok`` events logged for the step."""
    tool_outcomes: Counter[str] = field(default_factory=Counter)
    """``tool`` and ``tool-refused`` events by ``<tool> <outcome>``."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Dead letters by ``<agent> <reason>``."""
    dead_started: Counter[str] = field(default_factory=Counter)
    """Dead letters of tasks whose log shows them started (or finished), ``<agent> <reason>``."""
    workflows: int = 0
    open_hops: int = 0
    """Hops that started or were sent and never finished (completed or failed)."""
    stuck: list[str] = field(default_factory=list)
    """Workflows with an open hop."""
    stuck_detail: list[str] = field(default_factory=list)
    twice_detail: list[str] = field(default_factory=list)
    """``workflow: tool at step (n runs)`` of each step a tool ran more than once at."""
    """Each open hop: workflow, agent, step, status."""
    shown_running: int = 0
    """Hops that finished but that the tree (``jetmesh events``) shows running: their
    ``started`` event was stored after their ``completed`` one."""
    redelivered: int = 0
    """Hops that started more than once (a kill or a lost ack caught them)."""
    failed_hops: Counter[str] = field(default_factory=Counter)
    """Hops whose last word is ``failed``, by ``<agent> <reason>``."""
    events: int = 0
    unverified: int = 0
    """Events that fail verification."""
    forged: int = 0
    """Events that verify but are shown as forged in the tree."""
    unreadable: int = 0
    """Workflows whose log could not be read in time."""


def _task_id(data: bytes) -> str | None:
    try:
        return msgspec.json.decode(data, type=dict[str, object]).get("id")  # type: ignore[return-value]
    except msgspec.DecodeError:
        return None


async def count_desk(settings: MeshSettings, orders: Iterable[str], audit: Audit) -> None:
    """Payouts per order and the desk's own run counter per idempotency key, as the admin."""
    wanted = set(orders)
    desk = Desk(settings.redis_url, settings=settings, login=admin_login(settings))
    try:
        payouts = await desk.redis.lrange(f"{NAMESPACE}:payouts", 0, -1)
        runs = await desk.redis.hgetall(f"{NAMESPACE}:refund-runs")
    finally:
        await desk.aclose()
    per_order: Counter[str] = Counter()
    for raw in payouts:
        per_order[msgspec.json.decode(raw, type=RefundReceipt).order] += 1
    audit.orders = len(wanted)
    audit.paid = Counter(per_order.get(order, 0) for order in wanted)
    audit.paid_unexpected = sum(n for order, n in per_order.items() if order not in wanted)
    audit.desk_runs = Counter(int(n) for n in runs.values())


def _walk(roots: list[TaskNode]) -> list[TaskNode]:
    out, pending = [], list(roots)
    while pending:
        node = pending.pop()
        out.append(node)
        pending.extend(node.children)
    return out


def _never_started(nodes: list[TaskNode]) -> list[str]:
    """Calls (and accepted tickets) whose callee logged nothing at all: sent, never started."""
    accepted = [node for node in nodes if node.task is None]
    missing = []
    if accepted and not any(node.children for node in accepted):
        missing.append(f"{accepted[0].detail} at {accepted[0].step}: never started")
    for node in nodes:
        if node.task is None:
            continue
        calls = {
            e.event.callee_step: e.event.target for e in node.events if e.event.kind == ev.CALL
        }
        for step in calls.keys() - {child.step for child in node.children}:
            missing.append(f"{node.agent} called {calls[step]} at {step}: never started")
    return missing


def _count_log(workflow: str, logged: list[LoggedEvent], audit: Audit, started: set[str]) -> None:
    audit.events += len(logged)
    audit.unverified += sum(1 for e in logged if not e.verified)
    tools: Counter[tuple[str, str]] = Counter()
    for e in logged:
        if e.verified and e.event.kind == ev.STARTED and e.event.task:
            started.add(e.event.task)
        if e.verified and e.event.kind == TOOL and e.event.reason == "ok":
            tools[(e.event.target or "?", e.event.step)] += 1
        if e.verified and e.event.kind in (TOOL, "tool-refused"):
            audit.tool_outcomes[f"{e.event.target} {e.event.reason}"] += 1
    for (tool, step), n in tools.items():
        audit.tool_runs.setdefault(tool, Counter())[n] += 1
        if n > 1:
            audit.twice_detail.append(f"{workflow}: {tool} at {step} ({n} runs)")
    roots = build_tree(logged)
    nodes = _walk(roots)
    hops = [node for node in nodes if node.task is not None]
    never_started = _never_started(nodes)
    audit.open_hops += len(never_started)
    forged = sum(
        1 for node in hops for e in node.events if not e.verified and e.problem.startswith("forged")
    )
    audit.forged += forged
    finished = [any(e.verified and e.event.kind in FINAL for e in n.events) for n in hops]
    still_open = [node for node, done in zip(hops, finished, strict=True) if not done]
    audit.open_hops += len(still_open)
    audit.shown_running += sum(
        1 for node, done in zip(hops, finished, strict=True) if done and node.status == "running"
    )
    if still_open or never_started:
        audit.stuck.append(workflow)
        audit.stuck_detail += [f"{workflow}: {what}" for what in never_started]
        audit.stuck_detail += [
            f"{workflow}: {n.agent} at {n.step}: {n.status} (attempt {n.attempts}) {n.detail}"
            for n in still_open
        ]
    audit.redelivered += sum(1 for node in hops if node.attempts > 1)
    for node in hops:
        if node.status == ev.FAILED:
            audit.failed_hops[f"{node.agent} {node.detail.split(':', 1)[0]}"] += 1


async def count_logs(admin: MeshClient, workflows: list[str], audit: Audit) -> set[str]:
    """Every workflow's events, verified as the admin; returns the ids of tasks that started."""
    room = asyncio.Semaphore(READERS)
    started: set[str] = set()

    async def one(workflow: str) -> None:
        async with room:
            try:
                logged = await read_events(admin, workflow, timeout=30.0)
            except TimeoutError:
                audit.unreadable += 1
                return
        _count_log(workflow, logged, audit, started)

    audit.workflows = len(workflows)
    await asyncio.gather(*(one(w) for w in workflows))
    return started


async def count_dead_letters(
    admin: MeshClient, settings: MeshSettings, started: set[str], audit: Audit
) -> None:
    """Dead letters by agent and reason; those of tasks the log shows started, apart."""
    letters = await list_dead_letters(
        admin.js, settings.dlq_stream, admin.subjects.all_dlq, limit=DLQ_LIMIT
    )
    for letter in letters:
        what = f"{letter.agent or letter.owner} {letter.reason}"
        audit.dead_letters[what] += 1
        full = await with_task(admin.js, settings.tasks_stream, letter)
        task = _task_id(full.data) if full.data else None
        if task is not None and task in started:
            audit.dead_started[what] += 1


async def audit_run(
    admin: MeshClient, settings: MeshSettings, workflows: list[str], orders: list[str]
) -> Audit:
    """Count everything (see the module's docstring) with ``admin`` connected as the admin."""
    audit = Audit()
    await count_desk(settings, orders, audit)
    started = await count_logs(admin, workflows, audit)
    await count_dead_letters(admin, settings, started, audit)
    return audit
