"""The chaos scenario: research-shaped workflows while random agent replicas are SIGKILLed.

Each role of :mod:`loadtest.research_shape` (orchestrator, researcher, writer, critic) runs
as ``--replicas`` ``jetmesh run`` processes. An ingress sends ``--workflows`` questions,
``--in-flight`` at a time, while a chaos task SIGKILLs a random agent process ``--kills``
times, starting a replacement after each kill so that every role keeps serving. Kills are
spread over the run: kill ``k`` waits until ``k / (kills + 1)`` of the workflows were sent,
and the load waits for the chaos when it gets ahead.

Then it counts: every answer is compared with the expected report, every (workflow, step)
side effect with its counter in Redis (exactly once each), and the streams give the tasks
sent, the redeliveries and the dead letters.

    python -m loadtest.chaos [--workflows 5000] [--kills 50] [--replicas 2] [--in-flight 64]

The run is bounded in count and time (``--max-seconds``), starts its own nats-server and
redis-server (loadtest/servers.py) and stops every process it started. It exits 1 when a
workflow failed or an effect ran other than once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from nats.js import JetStreamContext

from jetmesh import KeyStore, MeshClient, MeshSettings, Subjects
from jetmesh.dead_letters import list_dead_letters
from jetmesh.envelope import new_id
from jetmesh.processes import AgentProcess
from loadtest.research_shape import (
    ORCHESTRATOR,
    ROLES,
    EffectTarget,
    Question,
    Report,
    expected_report,
    expected_steps,
)
from loadtest.servers import nats_server, redis_server

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Agent processes start here, so that ``loadtest.research_shape`` imports."""
INGRESS = "chaos"
CERT_TTL_S = 86400.0


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run."""

    workflows: int = 1000
    """Research workflows sent."""
    kills: int = 20
    """Agent processes SIGKILLed, spread over the run."""
    replicas: int = 2
    """Processes per role."""
    in_flight: int = 32
    """Workflows in flight at once."""
    fanout: int = 3
    """Researchers per workflow."""
    approve_round: int = 2
    """The draft round the critic approves."""
    work_ms: int = 50
    """Time each worker spends before its effect (a model call): tasks are in flight long
    enough that a kill catches some."""
    ack_wait_s: float = 2.0
    """AckWait: how soon a killed replica's tasks are redelivered."""
    pause_s: tuple[float, float] = (0.1, 0.5)
    """Random pause before each kill, in seconds (besides the load's pacing)."""
    request_timeout_s: float = 90.0
    """Deadline of one workflow."""
    max_seconds: float = 600.0
    """Deadline of the whole run; what is unfinished then counts as failed."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.workflows < 1 or self.kills < 0 or self.replicas < 2 or self.in_flight < 1:
            raise ValueError("need workflows >= 1, kills >= 0, replicas >= 2, in_flight >= 1")

    def question(self, run: str, i: int) -> Question:
        return Question(
            run,
            f"topic-{i}",
            fanout=self.fanout,
            approve_round=self.approve_round,
            work_ms=self.work_ms,
        )


@dataclass
class ChaosReport:
    """What a chaos run sent, got back and counted."""

    run: str
    """The run's name in Redis (see :class:`loadtest.research_shape.EffectTarget`)."""
    workflows: int
    sent: int = 0
    completed: int = 0
    """Answered with the expected report."""
    wrong: int = 0
    """Answered with another report."""
    failed: Counter[str] = field(default_factory=Counter)
    """Errors by type (``unfinished`` when the run's deadline passed)."""
    tasks_needed: int = 0
    tasks_sent: int = 0
    redelivered: int = 0
    dead_letters: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    """Dead letters by ``<agent> <reason>``."""
    effects_expected: int = 0
    effects_ran: int = 0
    duplicated: int = 0
    """Effects that ran more than once."""
    missing: int = 0
    """Expected effects that never ran."""
    unexpected: int = 0
    """Effects of steps no workflow has."""
    reconciled: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    processes: int = 0
    left_running: int = 0
    """Agent processes still running after the run (0: every one was stopped)."""
    seed: int = 0
    seconds: float = 0.0
    sent_workflows: list[tuple[str, Question]] = field(default_factory=list, repr=False)
    """Every workflow sent: its id and question."""

    @property
    def ok(self) -> bool:
        return (
            self.completed == self.workflows
            and self.duplicated == self.missing == self.unexpected == self.dead_letters == 0
            and self.left_running == 0
        )

    def format(self, config: ChaosConfig) -> str:
        c = config
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items())) or "0"
        rate = self.completed / self.seconds if self.seconds else 0.0
        return "\n".join(
            [
                f"chaos: {c.workflows} research workflows (fan-out {c.fanout}, critic approves "
                f"round {c.approve_round}), {len(ROLES)} roles x {c.replicas} replicas, "
                f"{c.in_flight} in flight, AckWait {c.ack_wait_s:g} s, {os.cpu_count()} CPUs",
                f"workflows  sent {self.sent}  completed {self.completed}  "
                f"wrong {self.wrong}  failed {failed}",
                f"tasks      sent {self.tasks_sent} (workflows need {self.tasks_needed})  "
                f"redelivered {self.redelivered}  dead letters {self.dead_letters}",
                f"effects    expected {self.effects_expected}  ran {self.effects_ran}  "
                f"duplicated {self.duplicated}  missing {self.missing}  "
                f"unexpected {self.unexpected}",
                f"chaos      {self.kills} SIGKILLs (seed {self.seed}), "
                f"{self.processes} agent processes started, {self.left_running} left running; "
                f"effects in doubt reconciled: found {self.reconciled.get('found', 0)}, "
                f"not found {self.reconciled.get('missing', 0)}",
                f"time       {self.seconds:.1f} s, {rate:.1f} workflows/s",
                f"result     {'OK' if self.ok else 'FAILED'}",
                *(f"dead letters: {n} {why}" for why, n in self.dead_letter_reasons.items()),
            ]
        )


class Fleet:
    """The agent processes of a run: a live set per role, every one ever started."""

    def __init__(self, settings: MeshSettings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.live: list[tuple[str, AgentProcess]] = []
        self.started: list[AgentProcess] = []

    async def start(self, role: str, count: int = 1) -> None:
        procs = [
            AgentProcess(
                [f"loadtest.research_shape:{role}"],
                self.settings,
                log_file=self.log_dir / f"{role}-{len(self.started) + i}.log",
            )
            for i in range(count)
        ]
        self.started.extend(procs)
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        self.live.extend((role, p) for p in procs)

    async def kill_one(self, rng: random.Random) -> str:
        """SIGKILL a random live process; returns its role."""
        role, proc = self.live.pop(rng.randrange(len(self.live)))
        await asyncio.to_thread(proc.kill)
        proc.stop()  # (already dead: closes its pipe)
        return role

    def stop(self) -> None:
        """Stop every live process (SIGTERM, drain; SIGKILL after a timeout), together."""
        live, self.live = self.live, []
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda entry: entry[1].stop(timeout=10.0), live))
        for proc in self.started:  # any left by a failed start
            proc.kill()
            proc.stop()

    @property
    def running(self) -> list[AgentProcess]:
        """Started processes that have not exited."""
        return [p for p in self.started if p.proc is not None and p.proc.poll() is None]


class _Load:
    """The ingress side: sends the workflows and checks each answer."""

    def __init__(self, config: ChaosConfig, report: ChaosReport, kills: Callable[[], int]) -> None:
        self.config = config
        self.report = report
        self.kills = kills
        self.next = 0
        self.progress = asyncio.Condition()
        """Notified when a workflow is sent or a process killed: each side waits for the other."""

    async def advanced(self) -> None:
        async with self.progress:
            self.progress.notify_all()

    async def wait_kills(self, count: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.kills() >= count)

    async def wait_sent(self, count: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.next >= count)

    def kills_due(self, i: int) -> int:
        """Kills that must have happened before workflow ``i`` is sent."""
        return i * self.config.kills // self.config.workflows

    async def run(self, client: MeshClient, token: str) -> None:
        await asyncio.gather(*(self._worker(client, token) for _ in range(self.config.in_flight)))

    async def _worker(self, client: MeshClient, token: str) -> None:
        c, report = self.config, self.report
        while self.next < c.workflows:
            i, self.next = self.next, self.next + 1
            await self.wait_kills(self.kills_due(i))
            await self.advanced()
            question, workflow = c.question(report.run, i), new_id()
            report.sent_workflows.append((workflow, question))
            report.sent += 1
            try:
                answer = await client.request(
                    ORCHESTRATOR,
                    question,
                    token=token,
                    returns=Report,
                    workflow=workflow,
                    timeout=c.request_timeout_s,
                )
            except Exception as exc:
                report.failed[type(exc).__name__] += 1
            else:
                if answer == expected_report(question):
                    report.completed += 1
                else:
                    report.wrong += 1


async def _chaos(
    config: ChaosConfig, fleet: Fleet, load: _Load, report: ChaosReport, rng: random.Random
) -> None:
    """Kill ``config.kills`` random processes, each once its share of the load was sent,
    and start a replacement of the same role after each."""
    for k in range(1, config.kills + 1):
        await load.wait_sent(k * config.workflows // (config.kills + 1))
        await asyncio.sleep(rng.uniform(*config.pause_s))
        role = await fleet.kill_one(rng)
        report.kills += 1
        await load.advanced()
        await fleet.start(role)


async def _count_streams(js: JetStreamContext, settings: MeshSettings, report: ChaosReport) -> None:
    """Tasks stored, redeliveries (deliveries beyond one per task) and dead letters."""
    subjects = Subjects(settings.subject_prefix)
    tasks = await js.stream_info(settings.tasks_stream, subjects_filter=subjects.all_tasks)
    report.tasks_sent = tasks.state.messages
    per_subject = tasks.state.subjects or {}
    for role in ROLES:
        consumer = await js.consumer_info(settings.tasks_stream, role)
        delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
        report.redelivered += max(delivered - per_subject.get(subjects.task(role), 0), 0)
    report.dead_letters = (await js.stream_info(settings.dlq_stream)).state.messages
    if report.dead_letters:
        for letter in await list_dead_letters(js, settings.dlq_stream, subjects.all_dlq):
            report.dead_letter_reasons[f"{letter.agent} {letter.reason}"] += 1


async def _count_effects(
    workflows: list[tuple[str, Question]], target: EffectTarget, report: ChaosReport
) -> None:
    """Each (workflow, step) effect's counter against the steps the workflows have."""
    expected = {f"{wf}:{step}" for wf, question in workflows for step in expected_steps(question)}
    report.tasks_needed = len(expected)  # one task per step, one effect per step
    counts = await target.counts(report.run)
    report.effects_expected = len(expected)
    report.effects_ran = sum(counts.values())
    report.duplicated = sum(1 for n in counts.values() if n > 1)
    report.missing = sum(1 for key in expected if counts.get(key, 0) == 0)
    report.unexpected = sum(1 for key in counts if key not in expected)
    report.reconciled = await target.reconciled(report.run)


def issue_identities(settings: MeshSettings) -> tuple[MeshClient, str]:
    """Certificates for every role (before any process starts, so none issues its own at
    the same time as another) and the ingress client with a caller token."""
    keys = KeyStore(settings.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(settings.subject_prefix)
    for role in ROLES:
        keys.issue(role, subjects=subjects, ttl_s=CERT_TTL_S)
    ingress = keys.issue(INGRESS, subjects=subjects, ttl_s=CERT_TTL_S, ingress=True)
    client = MeshClient(settings, ingress, roots=keys.roots())
    return client, client.mint_token("chaos", tenant="chaos")


async def run_chaos(
    settings: MeshSettings, config: ChaosConfig, *, log_dir: Path, run: str | None = None
) -> ChaosReport:
    """Run the scenario on the servers of ``settings`` and count what happened.

    Agent processes start in the current directory, which must be the repository root
    (they import ``loadtest.research_shape``). Every process started is stopped before this
    returns, also when it raises.

    Args:
        settings: the mesh (servers, prefix, streams); ``ack_wait_s`` comes from ``config``.
        config: the run's shape.
        log_dir: where each agent process writes its log.
        run: the run's name in Redis (default: the subject prefix).

    Returns:
        The report; ``report.ok`` says whether every workflow completed and every effect
        ran exactly once.
    """
    settings = MeshSettings(**{**settings.model_dump(), "ack_wait_s": config.ack_wait_s})
    seed = config.seed if config.seed is not None else random.randrange(2**32)
    report = ChaosReport(run=run or settings.subject_prefix, workflows=config.workflows, seed=seed)
    client, token = issue_identities(settings)
    fleet = Fleet(settings, log_dir)
    target = EffectTarget(settings.redis_url)
    load = _Load(config, report, lambda: report.kills)
    try:
        await client.start()
        for role in ROLES:
            await fleet.start(role, config.replicas)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(config.max_seconds), asyncio.TaskGroup() as group:
                group.create_task(load.run(client, token))
                group.create_task(_chaos(config, fleet, load, report, random.Random(seed)))
        except TimeoutError:
            answered = report.completed + report.wrong + sum(report.failed.values())
            report.failed["unfinished"] += report.sent - answered
        report.seconds = time.perf_counter() - started
        await asyncio.to_thread(fleet.stop)  # before counting: consumers are settled
        await _count_streams(client.js, settings, report)
        await _count_effects(report.sent_workflows, target, report)
    finally:
        await asyncio.to_thread(fleet.stop)
        report.processes = len(fleet.started)
        report.left_running = len(fleet.running)
        await client.close()
        await target.aclose()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workflows", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs over the run")
    parser.add_argument("--replicas", type=int, default=2, help="processes per role (>= 2)")
    parser.add_argument("--in-flight", type=int, default=64, help="workflows at once")
    parser.add_argument("--fanout", type=int, default=3, help="researchers per workflow")
    parser.add_argument("--approve-round", type=int, default=2, help="critic approves draft N")
    parser.add_argument("--work-ms", type=int, default=50, help="each worker's work time")
    parser.add_argument("--ack-wait", type=float, default=2.0, help="AckWait in seconds")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="deadline of the run")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the agents' logs here")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        workflows=args.workflows,
        kills=args.kills,
        replicas=args.replicas,
        in_flight=args.in_flight,
        fanout=args.fanout,
        approve_round=args.approve_round,
        work_ms=args.work_ms,
        ack_wait_s=args.ack_wait,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    kept_logs = args.log_dir.resolve() if args.log_dir else None
    os.chdir(REPO_ROOT)
    with (
        nats_server() as url,
        redis_server() as redis_url,
        tempfile.TemporaryDirectory(prefix="loadtest-chaos-") as tmp,
    ):
        settings = MeshSettings(
            nats_url=url,
            redis_url=redis_url,
            state_dir=Path(tmp),
            subject_prefix="chaos",
            tasks_stream="CHAOS_TASKS",
            events_stream="CHAOS_EVENTS",
            dlq_stream="CHAOS_DLQ",
            registry_bucket="CHAOS_KEYS",
        )
        try:
            log_dir = kept_logs or Path(tmp) / "logs"
            report = uvloop.run(run_chaos(settings, config, log_dir=log_dir))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
    print(report.format(config))
    if not report.ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
