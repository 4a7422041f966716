"""Payloads of the customer-support mesh (services/support)::

    caller --Ticket--> triage --Case--> billing | technical | product --KbQuery--> kb
                              \\                  |  (critic: mesh.ReviewRequest/1)
                               `--Case--> escalation <--Case-- (unresolved, unapproved)

Every role answers a :class:`Resolution`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
Money = Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]

Status = Literal["answered", "refunded", "refund-denied", "escalated"]


class RefundAsk(msgspec.Struct, frozen=True, kw_only=True):
    """A refund the customer asks for, with the ticket."""

    order: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    amount_eur: Money


class Ticket(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's question, as it enters the mesh."""

    __mesh_type__ = "support.Ticket/1"

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    customer: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    text: Text
    refund: RefundAsk | None = None
    """Set when the customer asks for money back (billing's refund path)."""


class RouteDecision(msgspec.Struct, frozen=True, kw_only=True):
    """Where triage sent a ticket, and why."""

    label: str
    """The class (``unknown`` when no class fits)."""
    target: str
    """The role it went to."""
    reason: str
    """The classifier's reason (the model, its confidence and rule)."""
    fallback: bool = False
    """The class is not in the routing table: the ticket went to the fallback."""


class CaseRound(msgspec.Struct, frozen=True, kw_only=True):
    """One draft of an answer and the critic's review of it."""

    round: int
    draft: str
    score: float
    critique: str


class Case(msgspec.Struct, frozen=True, kw_only=True):
    """A ticket with what the mesh knows about it: to a team, or to escalation."""

    __mesh_type__ = "support.Case/1"

    ticket: Ticket
    route: RouteDecision
    rounds: list[CaseRound] = []
    """The drafts and critiques so far (empty when triage sends it)."""
    reason: str = ""
    """Why it goes to a person (escalation only; empty: the class is unknown)."""
    team: str = ""
    """The team that handled it before escalation."""


class KbQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A knowledge-base lookup."""

    __mesh_type__ = "support.KbQuery/1"

    team: str
    text: Text
    limit: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3


class Article(msgspec.Struct, frozen=True, kw_only=True):
    """One knowledge-base article."""

    id: str
    title: str
    body: str
    score: float = 0.0
    """How well it matches the query (the ranker's score)."""


class KbHits(msgspec.Struct, frozen=True, kw_only=True):
    """Articles that match a query, best first."""

    __mesh_type__ = "support.KbHits/1"

    articles: list[Article]
    refused: str = ""
    """Set when the lookup was not allowed (the caller's token lacks ``kb:read``)."""


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of the ``refund`` tool (run by the tool gateway)."""

    order: str
    amount_eur: float
    customer: str
    ticket: str


class RefundReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """A refund the payment system issued."""

    id: str
    order: str
    amount_eur: float
    approved_by: str = ""
    """The person who approved it (empty: under the limit, no approval needed)."""


class Handoff(msgspec.Struct, frozen=True, kw_only=True):
    """A case handed to a person: its id in the people's queue."""

    id: str
    queue: str


class Resolution(msgspec.Struct, frozen=True, kw_only=True):
    """What the mesh did with a ticket: the answer, a refund, or a hand-off to a person."""

    __mesh_type__ = "support.Resolution/1"

    ticket_id: str
    status: Status
    team: str
    text: str
    sources: list[str] = []
    """Knowledge-base articles the answer drew on."""
    rounds: int = 0
    """Drafts written (critic-refiner rounds)."""
    score: float = 0.0
    """The critic's score of the answer."""
    refund: RefundReceipt | None = None
    handoff: Handoff | None = None
    """Set when a person takes the case over."""
    note: str = ""
    """Why (an escalation's reason, a refund decision's note)."""
