"""The events a run writes along the way (here an effect's, and a refusal's) are stored
before its end is recorded in the step ledger: a replica killed after that is answered for
from the record, which cannot write them again. The stream's acks of events are held back
(each settled 0.5 s late) so that an event sent in the background is still on its way
when the handler returns."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, Reject
from jetmesh.bus.group_commit import GroupCommit
from jetmesh.bus.publisher import StreamPublisher
from jetmesh.envelope import new_id
from jetmesh.runtime import replica as replica_module
from jetmesh.runtime.ledger import StepLedger
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration

LATE_S = 0.5


class Order(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Order/1"

    item: str
    refuse: bool = False


def shop() -> Agent:
    agent = Agent("shop")

    @agent.handler
    async def buy(order: Order, ctx: Context) -> Order:
        await ctx.emit_event("note", detail=f"buying {order.item}")
        if order.refuse:
            raise Reject(f"no {order.item} today")

        async def pay() -> str:
            return f"paid {order.item}"

        await ctx.once("pay", pay, returns=str)
        return order

    return agent


@dataclass
class Watch:
    """What the step ledger saw of the shop's replica when it recorded a step's end."""

    seen: list[str] = field(default_factory=list)
    publisher: StreamPublisher | None = None


@pytest.fixture
def late_acks(monkeypatch: pytest.MonkeyPatch) -> Watch:
    """Every event sent in the background is settled (stored, as far as its publisher
    knows) ``LATE_S`` after its ack came; each step end the shop records notes how many of
    its replica's events were still on their way at that moment."""
    watch = Watch()
    settled, finish = GroupCommit._settled, StepLedger.finish

    def late(self: GroupCommit, msg_id: str) -> None:
        asyncio.get_running_loop().call_later(LATE_S, settled, self, msg_id)

    async def finish_seen(self: StepLedger, workflow: str, agent: str, *a: Any) -> None:
        if agent == "shop":
            assert watch.publisher is not None
            watch.seen.append(f"recorded, {watch.publisher.pending} events on their way")
        await finish(self, workflow, agent, *a)

    monkeypatch.setattr(GroupCommit, "_settled", late)
    monkeypatch.setattr(StepLedger, "finish", finish_seen)
    return watch


async def start_shop(mesh: Mesh, watch: Watch) -> None:
    (replica,) = await mesh.start_replicas(shop())
    watch.publisher = replica.mesh.publisher


async def test_a_runs_events_are_stored_before_its_result_is_recorded(
    mesh: Mesh, late_acks: Watch
) -> None:
    await start_shop(mesh, late_acks)
    client = await mesh.ingress()
    workflow = new_id()
    got = await client.request(
        "shop", Order("tea"), token=mesh.token(), returns=Order, workflow=workflow
    )
    assert got == Order("tea")
    assert late_acks.seen == ["recorded, 0 events on their way"]
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "completed")))
    shop_kinds = [e.event.kind for e in logged if e.event.agent == "shop"]
    assert shop_kinds == ["note", "effect", "completed"]


async def test_a_refusals_events_are_stored_before_it_is_recorded(
    mesh: Mesh, late_acks: Watch
) -> None:
    await start_shop(mesh, late_acks)
    client = await mesh.ingress()
    with pytest.raises(CallFailed, match="no tea today"):
        await client.request("shop", Order("tea", refuse=True), token=mesh.token(), returns=Order)
    assert late_acks.seen == ["recorded, 0 events on their way"]


async def test_events_that_do_not_come_in_time_do_not_hold_the_run_back(
    mesh: Mesh, late_acks: Watch, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Past ``RUN_EVENTS_S`` the run's end is recorded without them, with a warning."""
    monkeypatch.setattr(replica_module, "RUN_EVENTS_S", LATE_S / 10)
    await start_shop(mesh, late_acks)
    client = await mesh.ingress()
    with caplog.at_level(logging.WARNING, logger="jetmesh.runtime"):
        got = await client.request("shop", Order("tea"), token=mesh.token(), returns=Order)
    assert got == Order("tea")
    assert late_acks.seen == ["recorded, 2 events on their way"]
    assert "events of its run not stored" in caplog.text
