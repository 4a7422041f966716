"""The support mesh's tools, as the gateway runs them: ``refund`` (the payment system),
``handoff`` (the people's queue) and ``search`` (the shipped knowledge base).

``refund`` and ``handoff`` reach the desk's stand-ins (:class:`services.support.systems.Desk`)
in process, with the call's idempotency key (the request's workflow and step). The gateway
runs each at most once per request step by its own ledger; each declares ``find`` (the desk
looked up by that key), so a run that a dying gateway left in doubt is settled by asking
the desk: found, it is recorded and not run again; not found, it runs with the same key.
The tools look the key up themselves too before acting (the second line, should the
gateway's record be lost). They need a credential, as a real payment system or ticket
queue would, though the stand-ins only record its fingerprint. ``search`` reads local
files, needs none, and is idempotent: a run in doubt is simply run again.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from jetmesh import ToolCall, ToolRegistry
from services.support.knowledge import articles
from services.support.systems import Desk
from services.support.wire import Case, Handoff, KbHits, KbQuery, Refund, RefundReceipt

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 3}


def support_tools(desk: Desk) -> ToolRegistry:
    """The tools of the support mesh, on ``desk``."""
    tools = ToolRegistry()

    async def find_refund(call: ToolCall) -> RefundReceipt | None:
        return await desk.find_refund(call.key)

    async def find_handoff(call: ToolCall) -> Handoff | None:
        return await desk.find_handoff(call.key)

    @tools.tool("refund", find=find_refund, description="pays a refund through the payment system")
    async def refund(call: ToolCall) -> RefundReceipt:
        args = msgspec.convert(call.args, Refund)
        done = await desk.find_refund(call.key)
        if done is not None:
            return done
        return await desk.refund(call.key, args.order, args.amount_eur, call.approved_by)

    @tools.tool("handoff", find=find_handoff, description="opens a case in the people's queue")
    async def handoff(call: ToolCall) -> Handoff:
        case = msgspec.convert(call.args, Case)
        done = await desk.find_handoff(call.key)
        if done is not None:
            return done
        return await desk.hand_off(call.key, case)

    @tools.tool(
        "search",
        needs_credential=False,
        idempotent=True,
        description="searches a team's articles (reads only)",
    )
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
