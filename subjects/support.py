"""Payloads of the helpdesk demo mesh: triage -> billing | technical -> kb."""

from __future__ import annotations

from typing import Annotated

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class Ticket(msgspec.Struct, frozen=True):
    """A customer's question, as it enters the mesh."""

    __mesh_type__ = "helpdesk.Ticket/1"

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    customer: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    text: Text


class KbQuery(msgspec.Struct, frozen=True):
    """A knowledge-base lookup."""

    __mesh_type__ = "helpdesk.KbQuery/1"

    team: str
    text: Text
    limit: Annotated[int, msgspec.Meta(ge=1, le=10)] = 2


class Article(msgspec.Struct, frozen=True):
    """One knowledge-base article."""

    id: str
    title: str
    body: str


class KbHits(msgspec.Struct, frozen=True):
    """Articles that match a query, best first."""

    __mesh_type__ = "helpdesk.KbHits/1"

    articles: list[Article]


class Answer(msgspec.Struct, frozen=True):
    """The drafted reply to a ticket."""

    __mesh_type__ = "helpdesk.Answer/1"

    ticket_id: str
    team: str
    text: str
    sources: list[str] = []
