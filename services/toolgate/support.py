"""The support mesh's tools, as the gateway runs them: ``refund`` (the payment system),
``handoff`` (the people's queue) and ``search`` (the shipped knowledge base).

``refund`` and ``handoff`` reach the desk's stand-ins (:class:`services.support.systems.Desk`)
in process, with the call's idempotency key (the request's workflow and step): a retry
of the same request finds what the first run did instead of doing it again. They need a
credential, as a real payment system or ticket queue would, though the stand-ins only
record its fingerprint. ``search`` reads local files and needs none.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from jetmesh import ToolCall, ToolRegistry
from services.support.knowledge import articles
from services.support.systems import Desk
from subjects.support import Case, Handoff, KbHits, KbQuery, Refund, RefundReceipt

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 3}


def support_tools(desk: Desk) -> ToolRegistry:
    """The tools of the support mesh, on ``desk``."""
    tools = ToolRegistry()

    @tools.tool("refund", description="pays a refund through the payment system")
    async def refund(call: ToolCall) -> RefundReceipt:
        args = msgspec.convert(call.args, Refund)
        done = await desk.find_refund(call.key)
        if done is not None:
            return done
        return await desk.refund(call.key, args.order, args.amount_eur, call.approved_by)

    @tools.tool("handoff", description="opens a case in the people's queue")
    async def handoff(call: ToolCall) -> Handoff:
        case = msgspec.convert(call.args, Case)
        done = await desk.find_handoff(call.key)
        if done is not None:
            return done
        return await desk.hand_off(call.key, case)

    @tools.tool("search", needs_credential=False, description="searches a team's articles")
    async def search(call: ToolCall) -> KbHits:
        query = msgspec.convert(call.args, KbQuery)
        asked = _words(query.text)
        scored: list[tuple[float, Any]] = []
        for article in articles(query.team):
            words = _words(f"{article.title} {article.body}")
            score = len(asked & words) / (len(asked) or 1)
            if score > 0:
                scored.append((score, msgspec.structs.replace(article, score=round(score, 2))))
        scored.sort(key=lambda pair: -pair[0])
        return KbHits(articles=[article for _, article in scored[: query.limit]])

    return tools
