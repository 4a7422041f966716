"""The poison scenario's audit: every poison item sent was dead-lettered, and nothing else.

After the load, and while the mesh is still up, it counts the poison items the run sent
(the scenario's bodies, in order, as many as its schedule sent, warm-up included) and
reads the agent's dead letters from the dead-letter stream as the servers' admin, each
with its task (:func:`jetmesh.dead_letters.with_task`), to tell poison from the others::

    [audit]
    check = "loadtest.poison_audit:audit"

    [audit.options]
    wait_s = 10      # how long to wait for the last dead letters (default 10)

Figures: ``poison items sent`` (at least 1: a run that sent none proves nothing),
``poison items dead-lettered`` (exactly as many as were sent) and ``other items
dead-lettered`` (none).
"""

from __future__ import annotations

import asyncio
import json
import time

import nats

from jetmesh import Subjects
from jetmesh.dead_letters import DeadLetter, list_dead_letters, with_task
from jetmesh.load import AuditFigure, AuditRun, ClosedArrival, Scenario, admin_jetstream, schedule
from jetmesh.settings import MeshSettings

__all__ = ["audit", "dead_letters", "is_poison", "poison_sent"]

WAIT_S = 10.0
"""How long to wait, by default, for the dead letters of the last poison items."""

DLQ_LIMIT = 100_000
"""Dead letters read at most."""


def is_poison(body: bytes) -> bool:
    """Whether a request body (or a task's body) is a poison item."""
    try:
        item = json.loads(body)
    except ValueError:
        return False
    return isinstance(item, dict) and item.get("poison") is True


def poison_sent(scenario: Scenario) -> int:
    """The poison items an open-loop run of ``scenario`` sent, warm-up included.

    Raises:
        ValueError: a closed loop (it has no schedule to count from).
    """
    if isinstance(scenario.arrival, ClosedArrival):
        raise ValueError("the poison audit needs an open-loop arrival (a schedule)")
    sends = len(schedule(scenario.arrival, scenario.warmup_s + scenario.seconds))
    bodies = scenario.bodies()
    return sum(is_poison(next(bodies)) for _ in range(sends))


async def dead_letters(settings: MeshSettings, agent: str, since: float) -> list[DeadLetter]:
    """``agent``'s dead letters stored since ``since`` (Unix time), each with its task's
    bytes, read as the servers' admin."""
    async with admin_jetstream(settings) as js:
        subject = Subjects(settings.subject_prefix).dlq(agent)
        try:
            letters = await list_dead_letters(js, settings.dlq_stream, subject, limit=DLQ_LIMIT)
        except nats.js.errors.NotFoundError:  # no dead-letter stream yet
            return []
        recent = [letter for letter in letters if letter.at >= since]
        return [await with_task(js, settings.tasks_stream, letter) for letter in recent]


def _body(letter: DeadLetter) -> bytes:
    envelope = letter.envelope()
    return bytes(envelope.body) if envelope is not None else b""


async def audit(run: AuditRun) -> list[AuditFigure]:
    """Poison items sent against poison items dead-lettered (see the module's docstring).

    Raises:
        ValueError: the run has no mesh settings to read the dead letters with, or a
            closed-loop arrival.
    """
    if run.settings is None:
        raise ValueError("the poison audit reads the dead-letter stream: it needs a nats door")
    scenario = run.scenario
    sent = poison_sent(scenario)
    since = run.report.started_at - scenario.warmup_s - 1.0
    wait_s = run.options.get("wait_s", WAIT_S)
    if not isinstance(wait_s, int | float):
        raise ValueError(f"audit.options.wait_s: a number of seconds, not {wait_s!r}")
    give_up = time.monotonic() + wait_s
    while True:
        letters = await dead_letters(run.settings, scenario.agent, since)
        if len(letters) >= sent or time.monotonic() > give_up:
            break
        await asyncio.sleep(0.5)
    poison = sum(is_poison(_body(letter)) for letter in letters)
    total_s = scenario.warmup_s + scenario.seconds
    reasons = sorted({letter.reason for letter in letters})
    return [
        AuditFigure(
            name="poison items sent",
            value=sent,
            least=1,
            detail=f"{scenario.describe_arrival()} for {total_s:g} s, warm-up included",
        ),
        AuditFigure(
            name="poison items dead-lettered",
            value=poison,
            least=sent,
            most=sent,
            detail=f"{scenario.agent}'s dead letters, reasons: {', '.join(reasons) or 'none'}",
        ),
        AuditFigure(name="other items dead-lettered", value=len(letters) - poison, most=0),
    ]
