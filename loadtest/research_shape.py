"""Research-shaped agents: a fan-out and a critic loop, with side effects that can be counted.

    orchestrator --gather--> researcher x fanout      (one finding each)
                 ----------> writer                   (draft, round 1)
                 ----------> critic                   (below the bar: refine)
                 ----------> writer, critic, ...      (approves on ``approve_round``)
                 ----------> publishes the report

Run each role as its own process from the repository root::

    jetmesh run loadtest.research_mesh.orchestrator:agent
    jetmesh run loadtest.research_mesh.researcher:agent     # and writer, critic

or all of them as a mesh package (``launch = "loadtest.research_mesh"`` in a load scenario's
``[mesh]``, as ``loadtest/scenarios/chaos.toml`` does).

Every step performs one side effect through ``ctx.once``: it increments a counter keyed by
(workflow, step) in a per-run Redis hash and writes a marker keyed the same way, in one
transaction (:class:`EffectTarget`). The driver reads the hash back and knows how many times
each effect ran; ``reconcile`` reads the marker, so a step whose replica died mid-effect is
settled instead of failing with ``EffectInDoubt``. Results are deterministic:
:func:`expected_report` is what the orchestrator must answer for a question, and the
orchestrator checks its own answer against it before it returns, recording ``right`` or
``wrong`` per workflow in Redis (:meth:`EffectTarget.answers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis

from jetmesh import Agent, Context, MeshSettings

APPROVAL_SCORE = 0.8
"""The critic approves a draft that scores at least this."""
MAX_ROUNDS = 5
"""The critic loop stops after this many drafts, approved or not."""
MARKER_TTL_S = 24 * 3600
PUBLISH = "publish"
"""The ``ctx.once`` key of every step's side effect."""
ORCHESTRATOR = "orchestrator"
ROLES = (ORCHESTRATOR, "researcher", "writer", "critic")
"""Every role, one process each (per replica)."""


class Question(msgspec.Struct, frozen=True):
    """A workflow's input: what to research, and how the run is shaped."""

    __mesh_type__ = "chaos.Question/1"

    run: str
    """Names the run's effect counters in Redis (a token: no ``:``)."""
    topic: str
    fanout: int = 3
    approve_round: int = 2
    """The draft round the critic approves (1: no refinement)."""
    work_ms: int = 0
    """How long each worker works (a model call) before its effect."""


class Topic(msgspec.Struct, frozen=True):
    __mesh_type__ = "chaos.Topic/1"

    run: str
    topic: str
    part: int
    work_ms: int = 0


class Finding(msgspec.Struct, frozen=True):
    __mesh_type__ = "chaos.Finding/1"

    part: int
    text: str


class DraftRequest(msgspec.Struct, frozen=True):
    __mesh_type__ = "chaos.DraftRequest/1"

    run: str
    topic: str
    findings: list[str]
    round: int
    notes: str = ""
    work_ms: int = 0


class Draft(msgspec.Struct, frozen=True):
    __mesh_type__ = "chaos.Draft/1"

    round: int
    text: str


class Review(msgspec.Struct, frozen=True):
    __mesh_type__ = "chaos.Review/1"

    run: str
    draft: Draft
    approve_round: int
    work_ms: int = 0


class Critique(msgspec.Struct, frozen=True):
    __mesh_type__ = "chaos.Critique/1"

    round: int
    score: float
    notes: str


class Report(msgspec.Struct, frozen=True):
    __mesh_type__ = "chaos.Report/1"

    topic: str
    findings: list[str]
    draft: str
    rounds: int
    score: float


# -- the effect target -------------------------------------------------------------------------


def effects_key(run: str) -> str:
    """The hash counting effects: field ``<workflow>:<step>``, value the times it ran."""
    return f"{run}:research:effects"


def marker_key(run: str, workflow: str, step: str) -> str:
    """The marker an effect leaves: what it returned, keyed by its workflow and step."""
    return f"{run}:research:marker:{workflow}:{step}"


def answers_key(run: str) -> str:
    """The hash of the orchestrator's answers: field ``<workflow>``, value ``right`` or
    ``wrong`` (compared with :func:`expected_report`)."""
    return f"{run}:research:answers"


def reconciled_key(run: str) -> str:
    """The hash counting reconciles: fields ``found`` and ``missing``."""
    return f"{run}:research:reconciled"


class EffectTarget:
    """Where the research steps' side effects land: Redis, standing in for an external
    system that keeps an idempotency key with each write. Connects on first use, to
    ``url`` or the process's ``JETMESH_REDIS_URL``, with ``login`` (``username``,
    ``password``) when given."""

    def __init__(self, url: str | None = None, login: Mapping[str, Any] | None = None) -> None:
        self._url = url
        self._login = dict(login or {})
        self._redis: Redis | None = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(self._url or MeshSettings().redis_url, **self._login)
        return self._redis

    async def apply(self, run: str, workflow: str, step: str, value: str) -> str:
        """The effect: count it and leave its marker, atomically (MULTI/EXEC)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(effects_key(run), f"{workflow}:{step}", 1)
            pipe.set(marker_key(run, workflow, step), value, ex=MARKER_TTL_S)
            await pipe.execute()
        return value

    async def find(self, run: str, workflow: str, step: str) -> str | None:
        """The reconcile check: the effect's value if its marker is there, else None."""
        raw = await self.redis.get(marker_key(run, workflow, step))
        await self.redis.hincrby(reconciled_key(run), "missing" if raw is None else "found", 1)
        return None if raw is None else _text(raw)

    async def counts(self, run: str) -> dict[str, int]:
        """How many times each effect of the run ran, by ``<workflow>:<step>``."""
        raw = await self.redis.hgetall(effects_key(run))
        return {_text(k): int(v) for k, v in raw.items()}

    async def reconciled(self, run: str) -> dict[str, int]:
        """How many reconcile checks found their effect's marker, and how many did not."""
        raw = await self.redis.hgetall(reconciled_key(run))
        return {_text(k): int(v) for k, v in raw.items()}

    async def record_answer(self, run: str, workflow: str, right: bool) -> None:
        """Record whether ``workflow``'s answer was the expected one (a run again records
        the same)."""
        await self.redis.hset(answers_key(run), workflow, "right" if right else "wrong")

    async def answers(self, run: str) -> dict[str, str]:
        """Each answered workflow and whether its answer was ``right`` or ``wrong``."""
        raw = await self.redis.hgetall(answers_key(run))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


target = EffectTarget()
"""This process's connection to the effect target (the agents' processes share one)."""


async def publish(ctx: Context, run: str, value: str) -> str:
    """Perform this step's side effect once, reconciled by its marker if in doubt."""

    async def effect() -> str:
        return await target.apply(run, ctx.workflow, ctx.step, value)

    async def reconcile() -> str | None:
        return await target.find(run, ctx.workflow, ctx.step)

    return await ctx.once(PUBLISH, effect, returns=str, reconcile=reconcile)


async def work(ms: int) -> None:
    """Stand-in for a model call."""
    if ms:
        await asyncio.sleep(ms / 1000)


# -- the deterministic work ----------------------------------------------------------------------


def finding(topic: str, part: int) -> str:
    return f"{topic}: finding {part}"


def draft_text(topic: str, findings: list[str], round_: int) -> str:
    return f"{topic}, draft {round_}: " + "; ".join(findings)


def score(round_: int, approve_round: int) -> float:
    return 0.9 if round_ >= approve_round else 0.4


def expected_report(q: Question) -> Report:
    """What the orchestrator answers for ``q``."""
    findings = [finding(q.topic, part) for part in range(1, q.fanout + 1)]
    rounds = min(max(q.approve_round, 1), MAX_ROUNDS)
    return Report(
        topic=q.topic,
        findings=findings,
        draft=draft_text(q.topic, findings, rounds),
        rounds=rounds,
        score=score(rounds, q.approve_round),
    )


def expected_steps(q: Question) -> list[str]:
    """The steps of one workflow, each performing one effect: the orchestrator's own (named
    after its role, as ingress sends it) and its calls, numbered in the order it makes them."""
    calls = ["researcher"] * q.fanout + ["writer", "critic"] * expected_report(q).rounds
    return [ORCHESTRATOR, *(f"{ORCHESTRATOR}/{c}.{n}" for n, c in enumerate(calls, start=1))]


def tasks_per_workflow(q: Question) -> int:
    return len(expected_steps(q))


# -- the agents ----------------------------------------------------------------------------------

orchestrator = Agent(ORCHESTRATOR, description="fans out research, drafts, loops with a critic")
researcher = Agent("researcher", description="one finding per subtopic")
writer = Agent("writer", description="drafts a report from findings, refines on notes")
critic = Agent("critic", description="scores a draft; approves from a given round")


@orchestrator.handler
async def research(q: Question, ctx: Context) -> Report:
    findings = await ctx.gather(
        ctx.call("researcher", Topic(q.run, q.topic, part, q.work_ms), returns=Finding)
        for part in range(1, q.fanout + 1)
    )
    texts = [f.text for f in findings]
    round_, notes = 1, ""
    while True:
        draft = await ctx.call(
            "writer", DraftRequest(q.run, q.topic, texts, round_, notes, q.work_ms), returns=Draft
        )
        critique = await ctx.call(
            "critic", Review(q.run, draft, q.approve_round, q.work_ms), returns=Critique
        )
        if critique.score >= APPROVAL_SCORE or round_ >= MAX_ROUNDS:
            break
        round_, notes = round_ + 1, critique.notes
    report = Report(q.topic, texts, draft.text, round_, critique.score)
    await publish(ctx, q.run, msgspec.json.encode(report).decode())
    await target.record_answer(q.run, ctx.workflow, report == expected_report(q))
    return report


@researcher.handler
async def find(t: Topic, ctx: Context) -> Finding:
    await work(t.work_ms)
    return Finding(t.part, await publish(ctx, t.run, finding(t.topic, t.part)))


@writer.handler
async def write(r: DraftRequest, ctx: Context) -> Draft:
    await work(r.work_ms)
    return Draft(r.round, await publish(ctx, r.run, draft_text(r.topic, r.findings, r.round)))


@critic.handler
async def review(r: Review, ctx: Context) -> Critique:
    await work(r.work_ms)
    s = score(r.draft.round, r.approve_round)
    await publish(ctx, r.run, f"{r.draft.round}:{s}")
    return Critique(r.draft.round, s, "" if s >= APPROVAL_SCORE else "cite sources")
