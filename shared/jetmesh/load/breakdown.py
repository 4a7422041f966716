"""Which agent is the bottleneck: each role's queueing, handling and share of the end-to-end
time, from the workflows' event logs.

For every hop (task) that ran its handler to completion, from its verified events:

- **handle**: the handler's run, ``duration_ms`` of the hop's ``completed`` event (the run
  that answered; a ``completed`` from the ledger ran no handler and is not a run). The run
  started ``duration_ms`` before that event's ``at``. (A ``started`` event is no start
  time: a first delivery writes it only once its handler has run 50 ms.)
- **queue**: from the moment the hop was asked for, the caller's ``call`` event (or the
  ingress's ``accepted`` for a workflow's first hop), to the start of that run: the task's
  publish, its wait for a free replica, delivery, verification, and any earlier attempts.
  Clocks of different hosts may disagree: a negative wait counts as 0.
- **self**: the handling time not spent waiting on the hop's own calls: ``handle`` minus
  the union of the intervals from each ``call`` to its ``reply`` (calls made together,
  ``ctx.gather``, overlap and count once).
- **end-to-end**: from the ``accepted`` event to the ``completed`` of the workflow's first
  hop.

A hop is on the **critical path** if its caller is, and, among calls its caller waited on
at overlapping times, its reply came last (the first hop is on it). A role's **share** is
the sum of ``queue + self`` over its hops on the critical path, divided by the sum of the
workflows' end-to-end times. Along the critical path every instant is either a hop's
queue, a hop's own handling, or transit (a reply on its way back, events being written),
so shares add up to about 100%, the rest being transit; a branch that ran in parallel and
finished earlier counts in ``hops``, ``queue`` and ``handle`` but adds nothing to
``share``. The bottleneck is the role with the largest share: the first of the list.

Only verified events count (:mod:`jetmesh.event_log` checks each signature and that the
hop was called by its caller). A hop with a forged or unverifiable event is skipped with
its subtree, and so is one with no completed run or no known call time: the numbers say
how many hops were measured, a warning on the ``jetmesh.load`` logger how many were not.

Example:
    >>> shares = await role_shares(mesh, workflows)          # doctest: +SKIP
    >>> shares[0].role, round(shares[0].share, 2)              # doctest: +SKIP
    ('worker', 0.93)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .. import events as ev
from ..event_log import LoggedEvent, TaskNode, build_tree, read_settled
from ..mesh_protocols import EventLogReading
from .report import RoleShare

__all__ = ["role_shares", "shares_from_trees"]

log = logging.getLogger("jetmesh.load")

K = TypeVar("K")

DEFAULT_CONCURRENCY = 16
"""How many workflows' logs :func:`role_shares` reads at once."""


@dataclass
class _Tally:
    """What one role's hops took, in milliseconds."""

    queue: list[float] = field(default_factory=list)
    handle: list[float] = field(default_factory=list)
    critical: float = 0.0
    """``queue + self`` of its hops on the critical path."""


@dataclass
class _Breakdown:
    roles: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    end_to_end_ms: float = 0.0
    skipped: int = 0


async def role_shares(
    mesh: EventLogReading,
    workflows: Iterable[str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = 5.0,
) -> list[RoleShare]:
    """Each role's queueing, handling and share of the end-to-end time over ``workflows``,
    largest share (the bottleneck) first; see the module docstring for the definitions.

    Args:
        mesh: a connection that reads and verifies the event log.
        workflows: the workflow ids to read.
        concurrency: how many workflows are read at once.
        timeout: how long to wait for one workflow's events to settle (agents write them
            asynchronously); a workflow still unsettled is measured as it is.

    Raises:
        ValueError: ``concurrency`` is below 1.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    gate = asyncio.Semaphore(concurrency)
    unread: list[str] = []

    async def tree(workflow: str) -> list[TaskNode]:
        async with gate:
            try:
                logged = await read_settled(mesh, workflow, timeout=timeout)
            except TimeoutError:
                unread.append(workflow)
                return []
        return build_tree([item for item in logged if _about_a_task(item)])

    forests = await asyncio.gather(*(tree(w) for w in workflows))
    if unread:
        log.warning("breakdown: %d workflows' events could not be read in time", len(unread))
    return shares_from_trees([root for roots in forests for root in roots])


def shares_from_trees(trees: Sequence[TaskNode]) -> list[RoleShare]:
    """Each role's queueing, handling and share of the end-to-end time in ``trees`` (the
    roots of :func:`jetmesh.event_log.build_tree`, of one workflow or many), largest share
    (the bottleneck) first; see the module docstring for the definitions."""
    found = _Breakdown()
    for root in trees:
        if root.task is None:
            _entry(root, found)
        else:  # a first hop whose ``accepted`` is not in the log: no known call time
            found.skipped += _count(root)
    if found.skipped:
        log.warning(
            "breakdown: %d hops skipped (unverified, unfinished, or with no known call time)",
            found.skipped,
        )
    total = found.end_to_end_ms
    shares = [
        RoleShare(
            role=role,
            hops=len(tally.handle),
            queue_ms_p50=_percentile(tally.queue, 0.50),
            handle_ms_p50=_percentile(tally.handle, 0.50),
            queue_ms_p99=_percentile(tally.queue, 0.99),
            handle_ms_p99=_percentile(tally.handle, 0.99),
            share=tally.critical / total if total > 0 else 0.0,
        )
        for role, tally in found.roles.items()
    ]
    return sorted(shares, key=lambda s: (-s.share, s.role))


def _about_a_task(item: LoggedEvent) -> bool:
    """An event build_tree shapes into hops: not a refusal about no task (``task`` null
    and not ``accepted``), which would look like an ingress entry."""
    return item.event.task is not None or item.event.kind == ev.ACCEPTED


def _entry(entry: TaskNode, found: _Breakdown) -> None:
    """An ingress entry: its first hops, asked at its ``accepted`` events."""
    accepted = [e.event.at for e in entry.events if e.verified and e.event.kind == ev.ACCEPTED]
    if not entry.verified or not accepted:
        found.skipped += sum(_count(c) for c in entry.children)
        return
    spans = {  # from its asking to its end, for each first hop that ran
        id(c): (_asked_at(accepted, run), run.end)
        for c in entry.children
        if (run := _run(c)) is not None
    }
    critical = _critical(spans)
    for child in entry.children:
        asked = spans[id(child)][0] if id(child) in spans else None
        _hop(child, asked, id(child) in critical, found)
    if spans:
        first = min(begin for begin, _ in spans.values())
        found.end_to_end_ms += (max(end for _, end in spans.values()) - first) * 1000


def _hop(node: TaskNode, asked: float | None, critical: bool, found: _Breakdown) -> None:
    """Measure ``node`` (asked for at ``asked``) and the hops it called."""
    run = _run(node)
    if not node.verified or run is None or asked is None:
        found.skipped += _count(node)
        return
    handle_ms = run.handle_ms
    queue_ms = max(0.0, run.start - asked) * 1000
    waits = _waits(node, run.start, run.end)
    tally = found.roles[node.agent]
    tally.queue.append(queue_ms)
    tally.handle.append(handle_ms)
    on_path = _critical(waits) if critical else set()
    if critical:
        tally.critical += queue_ms + max(0.0, handle_ms - _union_ms(waits.values()))
    for child in node.children:
        called = _called_at(node, child.step, _run(child))
        _hop(child, called, child.step in on_path, found)


@dataclass(frozen=True)
class _Run:
    """The handler's run that answered: when it started and ended, what it took."""

    start: float
    end: float
    handle_ms: float


def _run(node: TaskNode) -> _Run | None:
    """The verified ``completed`` of the handler's run that answered (the last one: an
    earlier run's reply may have been lost). It started ``duration_ms`` before the event
    (written after the reply was recorded and sent), or at the run's first own event if
    that came earlier."""
    runs = [
        e.event
        for e in node.events
        if e.verified
        and e.event.kind == ev.COMPLETED
        and e.event.reason != ev.FROM_LEDGER
        and e.event.duration_ms is not None
    ]
    if not runs:
        return None
    last = max(runs, key=lambda e: e.at)
    handle_ms = last.duration_ms or 0.0
    during = [
        e.event.at
        for e in node.events
        if e.verified and e.event.attempt == last.attempt and e.event.kind != ev.COMPLETED
    ]
    start = min([last.at - handle_ms / 1000, *during])
    return _Run(start=start, end=last.at, handle_ms=handle_ms)


def _asked_at(accepted: list[float], run: _Run) -> float:
    """When the ingress asked for a first hop: its latest ``accepted`` before ``run``."""
    return max((at for at in accepted if at <= run.start), default=min(accepted))


def _own(node: TaskNode, kind: str) -> list[LoggedEvent]:
    return [e for e in node.events if e.verified and e.event.kind == kind]


def _called_at(node: TaskNode, step: str, callee_run: _Run | None) -> float | None:
    """When ``node`` called ``step``: its latest ``call`` of it before the callee's run
    started (else its first)."""
    calls = [e.event.at for e in _own(node, ev.CALL) if e.event.callee_step == step]
    if not calls:
        return None
    if callee_run is None:
        return min(calls)
    return max((at for at in calls if at <= callee_run.start), default=min(calls))


def _waits(node: TaskNode, start: float, end: float) -> dict[str, tuple[float, float]]:
    """``step -> (call, reply)``: when the run from ``start`` to ``end`` waited on each of
    its calls (a call with no reply logged waits until the run's end). A call's answer is
    its ``reply`` event (an error, or a run without a step ledger), else its callee's
    ``completed`` or ``failed`` (written just after the reply was sent)."""
    replies: dict[str, list[float]] = defaultdict(list)
    for e in _own(node, ev.REPLY):
        replies[e.event.callee_step].append(e.event.at)
    logged = set(replies)
    for child in node.children:
        if child.step not in logged:
            done = [*_own(child, ev.COMPLETED), *_own(child, ev.FAILED)]
            replies[child.step].extend(e.event.at for e in done)
    waits: dict[str, tuple[float, float]] = {}
    for e in _own(node, ev.CALL):
        called = e.event.at
        if not start <= called <= end:
            continue  # an earlier run's call
        answered = min((at for at in replies[e.event.callee_step] if at >= called), default=end)
        waits[e.event.callee_step] = (called, min(answered, end))
    return waits


def _union_ms(spans: Iterable[tuple[float, float]]) -> float:
    """The length of the union of ``spans``, in milliseconds."""
    total, reach = 0.0, -math.inf
    for begin, end in sorted(spans):
        if end > reach:
            total += end - max(begin, reach)
            reach = end
    return total * 1000


def _critical(spans: dict[K, tuple[float, float]]) -> set[K]:
    """Of spans that overlap (a group of calls waited on together), the one that ended
    last; a span that overlaps no other is chosen alone."""
    chosen: set[K] = set()
    group: list[tuple[K, tuple[float, float]]] = []
    reach = -math.inf
    for key, span in sorted(spans.items(), key=lambda item: item[1]):
        if group and span[0] >= reach:  # a new group begins
            chosen.add(max(group, key=lambda item: item[1][1])[0])
            group, reach = [], -math.inf
        group.append((key, span))
        reach = max(reach, span[1])
    if group:
        chosen.add(max(group, key=lambda item: item[1][1])[0])
    return chosen


def _count(node: TaskNode) -> int:
    """Hops in the subtree of ``node``."""
    return 1 + sum(_count(c) for c in node.children)


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
