"""The audit of the restart scenario (``loadtest/scenarios/restarts.toml``): what the mesh
did with the load while its servers were SIGKILLed and started again, counted from the
servers themselves once the load is over.

Each task the harness sent starts a workflow at ``tally`` (:mod:`loadtest.tally`), whose
handler adds one to ``runs`` in the workflow's memory. The audit waits until the role's
consumer has nothing left to deliver or to ack, then counts:

- tasks acknowledged: the tasks the stream stored for ``tally`` (once each, by id);
- handlers ran: the workflows whose ``runs`` is set (at least every answered request);
- ran twice or more: the workflows whose ``runs`` is above one (at most 0);
- lost: tasks stored whose handler never ran (at most 0);
- redelivered: the consumer's count, since nats-server last started (reported);
- dead letters: messages in the dead-letter stream (at most 0).

It counts every ``tally`` workflow on the servers, so it is meant for the run's own
servers (``[mesh] embedded = true``); elsewhere it fails.

    [audit]
    check = "loadtest.restarts_audit:audit"

    [audit.options]
    settle_s = 30      # how long to wait for the consumer to have nothing in flight
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from jetmesh import MeshSettings, Subjects
from jetmesh.load import AuditFigure, AuditRun, admin_jetstream, wait_settled
from jetmesh.logins import admin_login
from jetmesh.memory import WorkingMemory
from loadtest.tally import TALLY

__all__ = ["TaskCounts", "audit", "count_runs", "count_tasks"]

SETTLE_S = 30.0
"""How long the audit waits, by default, for ``tally``'s consumer to have nothing left in
flight (a task whose reply timed out may still be running)."""
RUNS_KEY = "runs"


@dataclass(frozen=True)
class TaskCounts:
    """What the streams say about ``tally``'s tasks."""

    stored: int
    """Tasks the stream stored (once each, whatever the sends repeated)."""
    in_flight: int
    """Tasks not yet delivered or not yet acknowledged when the audit gave up waiting."""
    redelivered: int
    """Deliveries after the first, since nats-server last started."""
    dead_letters: int
    """Messages in the dead-letter stream."""


async def audit(run: AuditRun) -> list[AuditFigure]:
    """Count what the mesh did with the run's ``tally`` tasks (see the module's docstring).

    Args:
        run: The run; ``run.options["settle_s"]`` bounds the wait for the consumer.

    Returns:
        The figures, each with its bounds.

    Raises:
        ValueError: the run did not start its own servers (the counts would include
            other runs' workflows), or ``settle_s`` is not a number.
    """
    if run.settings is None or not run.embedded:
        raise ValueError("counts every tally workflow: needs the run's own servers")
    settle_s = run.options.get("settle_s", SETTLE_S)
    if not isinstance(settle_s, int | float):
        raise ValueError(f"settle_s: a number of seconds, not {settle_s!r}")
    tasks = await count_tasks(run.settings, settle_s=float(settle_s))
    runs = await count_runs(run.settings)
    ran = len(runs)
    twice = sum(1 for n in runs if n > 1)
    answered = run.report.completed
    return [
        AuditFigure(
            name="tasks acknowledged",
            value=tasks.stored,
            least=answered,
            detail="stored by the tasks stream, once each",
        ),
        AuditFigure(name="handlers ran", value=ran, least=answered, detail="tally workflows"),
        AuditFigure(name="ran twice or more", value=twice, most=0),
        AuditFigure(
            name="lost",
            value=max(0, tasks.stored - ran),
            most=0,
            detail=f"stored, never ran; {tasks.in_flight} still in flight",
        ),
        AuditFigure(
            name="redelivered", value=tasks.redelivered, detail="since nats-server last started"
        ),
        AuditFigure(name="dead letters", value=tasks.dead_letters, most=0),
    ]


async def count_tasks(settings: MeshSettings, *, settle_s: float = SETTLE_S) -> TaskCounts:
    """``tally``'s tasks as the streams hold them, once its consumer has nothing in flight
    (or after ``settle_s``), asked as the servers' admin."""
    subject = Subjects(settings.subject_prefix).task(TALLY)
    async with admin_jetstream(settings, max_reconnect_attempts=10) as js:
        in_flight = await wait_settled(js, settings.tasks_stream, [TALLY], settle_s=settle_s)
        consumer = await js.consumer_info(settings.tasks_stream, TALLY)
        tasks = await js.stream_info(settings.tasks_stream, subjects_filter=subject)
        dlq = await js.stream_info(settings.dlq_stream)
    return TaskCounts(
        stored=(tasks.state.subjects or {}).get(subject, 0),
        in_flight=in_flight,
        redelivered=consumer.num_redelivered,
        dead_letters=dlq.state.messages,
    )


async def count_runs(settings: MeshSettings) -> list[int]:
    """Each ``tally`` workflow's ``runs`` (the workflows whose handler ran at least once),
    read from Redis as its admin."""
    redis = Redis.from_url(settings.redis_url, **admin_login(settings).redis_options())
    # every workflow's key of tally's runs: the workflow a glob
    pattern = WorkingMemory(redis, settings.subject_prefix, "*", TALLY).key(RUNS_KEY)
    try:
        found = [key async for key in redis.scan_iter(match=pattern, count=1000)]
        async with redis.pipeline(transaction=False) as pipe:
            for key in found:
                pipe.hget(key, "d")
            raw = await pipe.execute()
    finally:
        await redis.aclose()
    return [int(r) for r in raw if r is not None]
