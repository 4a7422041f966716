"""The chaos scenario's audit (``loadtest/scenarios/chaos.toml``, ``[audit] check =
"loadtest.chaos_audit:audit"``): after the load, while the mesh is still up, it counts what
the research-shaped agents (:mod:`loadtest.research_shape`) really did under the kills.

- the orchestrator's own check of each answer against the expected report (right, wrong);
- the tasks stored on the tasks stream and the deliveries beyond one per task (a killed
  replica's tasks, delivered again to another);
- each (workflow, step) side effect's counter in Redis: expected (workflows completed x
  steps per workflow), ran, duplicated (ran more than once), missing (a step of an answered
  workflow that never ran), unexpected (a step no workflow has);
- the effects in doubt that ``reconcile`` settled (a replica died between claiming an
  effect and recording it): found done, or not;
- the dead letters, by agent and reason (the first hundred);
- the kills the scenario's faults made.

It reads the run's name and the workflow's shape from the scenario's payload (every body
has the same ``run``, ``fanout`` and ``approve_round``), and logs in to the servers as
their admin (:func:`jetmesh.logins.admin_login`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from jetmesh import MeshSettings, Subjects
from jetmesh.dead_letters import list_dead_letters
from jetmesh.load import AuditFigure, AuditRun, admin_jetstream
from jetmesh.logins import admin_login
from loadtest.research_mesh import ROLES
from loadtest.research_shape import EffectTarget, Question, expected_steps

__all__ = ["audit"]


@dataclass(frozen=True)
class _Tasks:
    stored: int
    """Tasks on the tasks stream."""
    redelivered: int
    """Deliveries beyond one per stored task, over the roles' consumers."""
    dead_letters: Counter[str]
    """Dead letters by ``<agent> <reason>``."""


async def _tasks(settings: MeshSettings) -> _Tasks:
    """The tasks stream's count and its consumers' redeliveries, asked as the admin."""
    subjects = Subjects(settings.subject_prefix)
    async with admin_jetstream(settings) as js:
        info = await js.stream_info(settings.tasks_stream, subjects_filter=subjects.all_tasks)
        per_subject = info.state.subjects or {}
        redelivered = 0
        for role in ROLES:
            consumer = await js.consumer_info(settings.tasks_stream, role)
            delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
            redelivered += max(delivered - per_subject.get(subjects.task(role), 0), 0)
        letters = await list_dead_letters(js, settings.dlq_stream, subjects.all_dlq)
        reasons = Counter(f"{letter.agent} {letter.reason}" for letter in letters)
        return _Tasks(info.state.messages, redelivered, reasons)


def _question(run: AuditRun) -> Question:
    """The scenario's first body, as the orchestrator reads it."""
    return msgspec.json.decode(next(run.scenario.bodies()), type=Question)


def _effects(
    counts: dict[str, int], answered: set[str], steps: list[str], expected: int
) -> Iterator[AuditFigure]:
    """The effect counters against the steps of the answered workflows."""
    known = set(steps)
    missing = sum(1 for wf in answered for step in steps if counts.get(f"{wf}:{step}", 0) == 0)
    yield AuditFigure(
        name="effects expected",
        value=expected,
        detail=f"{expected // len(steps)} workflows completed x {len(steps)} steps",
    )
    yield AuditFigure(name="effects ran", value=sum(counts.values()), least=expected)
    yield AuditFigure(
        name="effects duplicated",
        value=sum(1 for n in counts.values() if n > 1),
        most=0,
        detail="effects that ran more than once",
    )
    yield AuditFigure(
        name="effects missing",
        value=missing,
        most=0,
        detail="steps of answered workflows whose effect never ran",
    )
    yield AuditFigure(
        name="effects unexpected",
        value=sum(1 for key in counts if key.split(":", 1)[1] not in known),
        most=0,
        detail="effects of steps no workflow has",
    )


async def audit(run: AuditRun) -> list[AuditFigure]:
    """Count the answers, tasks, effects and kills of a chaos run.

    Args:
        run: The scenario, its report so far and the servers' settings.

    Returns:
        The figures; ``wrong answers``, ``effects duplicated``, ``effects missing`` and
        ``effects unexpected`` must be 0, ``answered right`` at least the completed
        workflows and ``effects ran`` at least the effects expected of them.

    Raises:
        ValueError: the run has no NATS settings (the scenario must use the NATS door).
    """
    if run.settings is None:
        raise ValueError("the chaos audit needs the mesh's settings (door = 'nats')")
    question = _question(run)
    steps = expected_steps(question)
    target = EffectTarget(run.settings.redis_url, admin_login(run.settings).redis_options())
    try:
        answers = await target.answers(question.run)
        counts = await target.counts(question.run)
        reconciled = await target.reconciled(question.run)
    finally:
        await target.aclose()
    tasks = await _tasks(run.settings)
    completed = run.report.completed
    right = sum(1 for said in answers.values() if said == "right")
    found, not_found = reconciled.get("found", 0), reconciled.get("missing", 0)
    kills = [f for f in run.report.faults if f.kind == "kill"]
    return [
        AuditFigure(
            name="answers right",
            value=right,
            least=completed,
            detail="the orchestrator's answer equals the expected report",
        ),
        AuditFigure(name="answers wrong", value=len(answers) - right, most=0),
        AuditFigure(
            name="tasks sent",
            value=tasks.stored,
            detail=f"the workflows need {len(answers) * len(steps)}; the rest were sent "
            "again by orchestrators that ran again after a kill",
        ),
        AuditFigure(
            name="tasks redelivered",
            value=tasks.redelivered,
            detail="deliveries beyond one per task: a killed replica's tasks, delivered again",
        ),
        AuditFigure(
            name="dead letters",
            value=tasks.dead_letters.total(),
            most=0,
            detail=", ".join(f"{n} {why}" for why, n in tasks.dead_letters.most_common(5)),
        ),
        *_effects(counts, set(answers), steps, completed * len(steps)),
        AuditFigure(
            name="effects in doubt, reconciled",
            value=found + not_found,
            detail=f"found done {found}, not found {not_found}",
        ),
        AuditFigure(
            name="agent processes killed",
            value=sum(1 for f in kills if f.done),
            detail=f"of {len(kills)} kills scheduled",
        ),
    ]
