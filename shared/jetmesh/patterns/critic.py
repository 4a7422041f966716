"""Critic-refiner: a producer drafts, a critic scores the draft and says what is missing,
and the producer refines with that critique, until the score reaches the threshold or the
rounds run out.

Producer and critic are roles (calls with the wire types of this module: the producer
takes a :class:`DraftRequest` and answers a :class:`Draft`, the critic takes a
:class:`ReviewRequest` and answers a :class:`Review`) or callables of yours (which may
call roles with types of yours, or ``ctx.model``). Every round is a ``round`` event and a
record in the workflow's working memory under the refining agent's namespace (key
``memory_key``), replaced rather than added when a handler runs again after a crash; the
end is a ``refined`` event that says why it stopped.

Example:
    >>> done = await refine(ctx, producer="writer", critic="critic",         # doctest: +SKIP
    ...                     brief=question, threshold=0.8, max_rounds=4)
    >>> done.stopped, done.score, len(done.rounds)                          # doctest: +SKIP
    ('threshold', 0.85, 2)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

import msgspec

from ..runtime.context_base import ContextBase

D = TypeVar("D")

ROUND = "round"
"""Event: one round (its number in ``key``; score, threshold and critique in ``detail``)."""
REFINED = "refined"
"""Event: the loop ended (``reason``: ``threshold`` or ``max-rounds``)."""

Stopped = Literal["threshold", "max-rounds"]


class DraftRequest(msgspec.Struct, frozen=True, kw_only=True):
    """To a producer role: draft (round 1) or refine (later rounds) for a brief."""

    __mesh_type__ = "mesh.DraftRequest/1"

    brief: str
    round: int
    previous: str = ""
    """The previous round's draft ("" in round 1)."""
    critique: str = ""
    """The critic's critique of it."""


class Draft(msgspec.Struct, frozen=True):
    """A producer role's answer."""

    __mesh_type__ = "mesh.Draft/1"

    text: str


class ReviewRequest(msgspec.Struct, frozen=True, kw_only=True):
    """To a critic role: score a draft against a brief."""

    __mesh_type__ = "mesh.ReviewRequest/1"

    brief: str
    draft: str
    round: int
    threshold: float


class Review(msgspec.Struct, frozen=True):
    """A critic's answer: a score (compared with the threshold) and what to improve."""

    __mesh_type__ = "mesh.Review/1"

    score: float
    critique: str = ""


@dataclass(frozen=True)
class Round(Generic[D]):
    """One round: the draft, its score and its critique."""

    number: int
    draft: D
    score: float
    critique: str


class RoundRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A round as kept in working memory (the draft as JSON)."""

    step: str
    """The refining task's step (several loops of one agent in a workflow share the key)."""
    round: int
    draft: msgspec.Raw
    score: float
    critique: str
    passed: bool


@dataclass(frozen=True)
class Refined(Generic[D]):
    """The loop's outcome."""

    draft: D
    """The last draft (the one that reached the threshold, if one did)."""
    score: float
    stopped: Stopped
    """``threshold``: the last draft reached it; ``max-rounds``: none did in time."""
    rounds: list[Round[D]]
    memory_key: str
    """Where the rounds are in working memory: ``ctx.memory`` key, a list of
    :class:`RoundRecord`."""

    @property
    def best(self) -> Round[D]:
        """The round with the highest score (the earliest of equals)."""
        return max(reversed(self.rounds), key=lambda r: r.score)


Producer = Callable[[Round[D] | None], Awaitable[D]]
"""Drafts (given None) or refines (given the previous round, with its critique)."""
Critic = Callable[[D, int], Awaitable[Review]]
"""Scores a draft of a round."""


def producer_role(
    ctx: ContextBase, agent: str, brief: str, *, timeout: float | None = None
) -> Producer[Draft]:
    """A producer that calls the role ``agent`` with a :class:`DraftRequest`."""

    def produce(previous: Round[Draft] | None) -> Awaitable[Draft]:
        request = DraftRequest(
            brief=brief,
            round=previous.number + 1 if previous else 1,
            previous=previous.draft.text if previous else "",
            critique=previous.critique if previous else "",
        )
        return ctx.call(agent, request, returns=Draft, timeout=timeout)

    return produce


def critic_role(
    ctx: ContextBase, agent: str, brief: str, threshold: float, *, timeout: float | None = None
) -> Critic[Draft]:
    """A critic that calls the role ``agent`` with a :class:`ReviewRequest`."""

    def review(draft: Draft, number: int) -> Awaitable[Review]:
        request = ReviewRequest(brief=brief, draft=draft.text, round=number, threshold=threshold)
        return ctx.call(agent, request, returns=Review, timeout=timeout)

    return review


@overload
async def refine(
    ctx: ContextBase,
    *,
    producer: str,
    critic: str,
    brief: str,
    threshold: float,
    max_rounds: int,
    memory_key: str = "rounds",
    timeout: float | None = None,
) -> Refined[Draft]: ...


@overload
async def refine(
    ctx: ContextBase,
    *,
    producer: Producer[D],
    critic: Critic[D],
    threshold: float,
    max_rounds: int,
    memory_key: str = "rounds",
) -> Refined[D]: ...


async def refine(
    ctx: ContextBase,
    *,
    producer: str | Producer[Any],
    critic: str | Critic[Any],
    threshold: float,
    max_rounds: int,
    brief: str = "",
    memory_key: str = "rounds",
    timeout: float | None = None,
) -> Refined[Any]:
    """Draft, review, refine until a draft scores ``threshold`` or ``max_rounds`` end.

    Args:
        ctx: the refining handler's context.
        producer: a producer role's name, or a :data:`Producer`.
        critic: a critic role's name, or a :data:`Critic`.
        threshold: the score a draft must reach (``score >= threshold``).
        max_rounds: drafts at most (1: no refinement).
        brief: what the roles are told to write (roles only).
        memory_key: the working-memory key of the rounds.
        timeout: each role call's deadline, in seconds (roles only).

    Raises:
        ValueError: ``max_rounds`` below 1.
        MeshError: a producer's or critic's failure (``CallFailed``, ``MeshTimeout``).
    """
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, not {max_rounds}")
    produce = (
        producer_role(ctx, producer, brief, timeout=timeout)
        if isinstance(producer, str)
        else producer
    )
    review = (
        critic_role(ctx, critic, brief, threshold, timeout=timeout)
        if isinstance(critic, str)
        else critic
    )
    rounds: list[Round[Any]] = []
    previous: Round[Any] | None = None
    for number in range(1, max_rounds + 1):
        draft = await produce(previous)
        verdict = await review(draft, number)
        previous = Round(number, draft, verdict.score, verdict.critique)
        rounds.append(previous)
        passed = verdict.score >= threshold
        await _keep(ctx, memory_key, previous, passed)
        await ctx.emit_event(
            ROUND,
            key=str(number),
            detail=(
                f"round {number}: score {verdict.score:.2f} {'>=' if passed else '<'} "
                f"{threshold:.2f}" + ("" if passed else f"; critique: {verdict.critique}")
            )[:1024],
        )
        if passed:
            break
    assert previous is not None
    stopped: Stopped = "threshold" if previous.score >= threshold else "max-rounds"
    await ctx.emit_event(
        REFINED,
        reason=stopped,
        detail=f"stopped: {stopped} after {len(rounds)} round(s), score {previous.score:.2f}",
    )
    return Refined(previous.draft, previous.score, stopped, rounds, memory_key)


async def _keep(ctx: ContextBase, key: str, done: Round[Any], passed: bool) -> None:
    """Put round ``done`` in working memory in its place: a handler that runs again
    replaces its rounds instead of adding them twice."""
    record = RoundRecord(
        step=ctx.step,
        round=done.number,
        draft=msgspec.Raw(msgspec.json.encode(done.draft)),
        score=done.score,
        critique=done.critique,
        passed=passed,
    )

    def put(kept: list[RoundRecord] | None) -> list[RoundRecord]:
        others = [r for r in kept or [] if r.step != record.step or r.round < record.round]
        return [*others, record]

    await ctx.memory.update(key, list[RoundRecord], put)
