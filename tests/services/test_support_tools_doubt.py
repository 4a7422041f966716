"""The support mesh's tools declare how the gateway settles a run left in doubt: ``refund``
and ``handoff`` find what a run did on the desk by the call's idempotency key (nothing
before it ran, exactly its result after), ``search`` is idempotent; on the session Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from jetmesh import MeshSettings, ToolCall
from jetmesh.envelope import new_id
from services.support.systems import Desk
from services.support.tools import support_tools
from services.support.wire import Case, Refund, RouteDecision, Ticket

pytestmark = pytest.mark.integration


@pytest.fixture
async def desk(settings: MeshSettings) -> AsyncIterator[Desk]:
    built = Desk(settings.redis_url, namespace=f"desk-{settings.subject_prefix}")
    try:
        yield built
    finally:
        await built.aclose()


def call(tool: str, args: msgspec.Struct) -> ToolCall:
    return ToolCall(
        tool=tool,
        args=msgspec.to_builtins(args),
        credential=None,
        key=f"{new_id()}/billing/toolgate.1",
        caller="ivan",
        tenant="acme",
        sender="billing",
    )


async def test_refund_and_handoff_find_a_run_by_its_key_and_search_may_run_again(
    desk: Desk,
) -> None:
    tools = support_tools(desk)
    refund, handoff, search = tools.get("refund"), tools.get("handoff"), tools.get("search")
    assert refund is not None
    assert handoff is not None
    assert search is not None
    assert refund.find is not None
    assert handoff.find is not None
    assert (refund.idempotent, handoff.idempotent, search.idempotent) == (False, False, True)
    assert search.find is None
    assert all(tool.settles_doubt for tool in (refund, handoff, search))

    paid = call("refund", Refund(order="A-1", amount_eur=35.0, customer="ivan", ticket="T-1"))
    assert await refund.find(paid) is None, "nothing under the key before the run"
    receipt = await refund.fn(paid)
    assert await refund.find(paid) == receipt
    assert await desk.refund_runs(paid.key) == 1
    other = call("refund", Refund(order="A-1", amount_eur=35.0, customer="ivan", ticket="T-1"))
    assert await refund.find(other) is None, "another step's key finds nothing"

    ticket = Ticket(id="T-2", customer="ivan", text="help")
    route = RouteDecision(label="billing", target="billing", reason="test")
    case = call("handoff", Case(ticket=ticket, route=route, team="billing", reason="test"))
    assert await handoff.find(case) is None
    handed = await handoff.fn(case)
    assert await handoff.find(case) == handed
