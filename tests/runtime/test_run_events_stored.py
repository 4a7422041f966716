"""The events a run writes along the way (here a note and an effect's) do not die with a
replica killed after its result is recorded in the step ledger, though the task is then
answered for from the record and the handler does not run again: the record carries
those not yet stored, and answering from it sends them again. A refusal, rarer, waits for
them before it is recorded. The stream's acks of events are held back (each settled
0.5 s late) so that an event sent in the background is still on its way when the handler
returns; a replica's death with its events is a publisher that never sends them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, Reject
from jetmesh.bus.acks import Pending
from jetmesh.bus.group_commit import GroupCommit
from jetmesh.bus.publisher import StreamPublisher
from jetmesh.envelope import new_id
from jetmesh.runtime import replica as replica_module
from jetmesh.runtime.ledger import Recorded, StepLedger
from jetmesh.runtime.replica import Replica
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
    carried: list[str] = field(default_factory=list)
    """The kinds of event each record carried."""
    publisher: StreamPublisher | None = None


@pytest.fixture
def late_acks(monkeypatch: pytest.MonkeyPatch) -> Watch:
    """Every event sent in the background is settled (stored, as far as its publisher
    knows) ``LATE_S`` after its ack came; each step end the shop records notes how many of
    its replica's events were still on their way at that moment, and which it carried."""
    watch = Watch()
    settled, finish = GroupCommit._settled, StepLedger.finish

    def late(self: GroupCommit, msg_id: str) -> None:
        asyncio.get_running_loop().call_later(LATE_S, settled, self, msg_id)

    async def finish_seen(
        self: StepLedger, workflow: str, agent: str, step: str, record: Recorded
    ) -> None:
        if agent == "shop":
            assert watch.publisher is not None
            watch.seen.append(f"recorded, {watch.publisher.pending} events on their way")
            watch.carried += [e.subject.rsplit(".", 1)[-1] for e in record.events]
        await finish(self, workflow, agent, step, record)

    monkeypatch.setattr(GroupCommit, "_settled", late)
    monkeypatch.setattr(StepLedger, "finish", finish_seen)
    return watch


async def start_shop(mesh: Mesh, watch: Watch) -> Replica:
    (replica,) = await mesh.start_replicas(shop())
    watch.publisher = replica.mesh.publisher
    return replica


async def test_a_results_record_carries_the_runs_events_not_yet_stored(
    mesh: Mesh, late_acks: Watch
) -> None:
    """Without waiting for them: the result is recorded while both are on their way."""
    await start_shop(mesh, late_acks)
    client = await mesh.ingress()
    workflow = new_id()
    got = await client.request(
        "shop", Order("tea"), token=mesh.token(), returns=Order, workflow=workflow
    )
    assert got == Order("tea")
    assert late_acks.seen == ["recorded, 2 events on their way"]
    assert late_acks.carried == ["note", "effect"]
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "completed")))
    assert [e.event.kind for e in logged if e.event.agent == "shop"] == [
        "note",
        "effect",
        "completed",
    ]


async def test_answering_from_the_record_sends_the_carried_events_again(
    mesh: Mesh, late_acks: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run's events never leave its publisher (it died with them, as far as the
    stream knows); the same step asked again is answered from the record, and the log
    then holds each of them once."""
    replica = await start_shop(mesh, late_acks)
    publish_later = StreamPublisher.publish_later
    lost = {"on": True}

    async def never_sent(
        self: StreamPublisher, msg_id: str, subject: str, data: bytes, headers: dict[str, str]
    ) -> None:
        if self is replica.mesh.publisher and lost["on"] and ".event." in subject:
            self._pending[msg_id] = Pending(subject, data, headers, deadline=0.0, queued=True)
            return  # queued: the sweeper leaves it to a group commit that never comes
        await publish_later(self, msg_id, subject, data, headers)

    monkeypatch.setattr(StreamPublisher, "publish_later", never_sent)
    client = await mesh.ingress()
    workflow = new_id()
    token = mesh.token()
    assert await client.request(
        "shop", Order("tea"), token=token, returns=Order, workflow=workflow
    ) == Order("tea")
    assert late_acks.carried == ["note", "effect"]
    lost["on"] = False
    assert await client.request(
        "shop", Order("tea"), token=token, returns=Order, workflow=workflow
    ) == Order("tea")
    logged = await mesh.wait_events(
        workflow, lambda got: len(kinds(got, "completed")) == 2 and bool(kinds(got, "effect"))
    )
    shop_kinds = sorted(e.event.kind for e in logged if e.event.agent == "shop")
    assert shop_kinds == ["completed", "completed", "effect", "note"]
    assert late_acks.seen == ["recorded, 2 events on their way"]  # once: then from the record


async def test_a_refusals_events_are_stored_before_it_is_recorded(
    mesh: Mesh, late_acks: Watch
) -> None:
    await start_shop(mesh, late_acks)
    client = await mesh.ingress()
    with pytest.raises(CallFailed, match="no tea today"):
        await client.request("shop", Order("tea", refuse=True), token=mesh.token(), returns=Order)
    assert late_acks.seen == ["recorded, 0 events on their way"]


async def test_events_that_do_not_come_in_time_do_not_hold_a_refusal_back(
    mesh: Mesh, late_acks: Watch, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Past ``RUN_EVENTS_S`` the refusal is recorded without them, with a warning."""
    monkeypatch.setattr(replica_module, "RUN_EVENTS_S", LATE_S / 10)
    await start_shop(mesh, late_acks)
    client = await mesh.ingress()
    refusal = pytest.raises(CallFailed, match="no tea today")
    with caplog.at_level(logging.WARNING, logger="jetmesh.runtime"), refusal:
        await client.request("shop", Order("tea", refuse=True), token=mesh.token(), returns=Order)
    assert late_acks.seen == ["recorded, 1 events on their way"]
    assert "events of its run not stored" in caplog.text


async def test_a_long_run_keeps_the_ids_of_its_stored_events_no_longer(mesh: Mesh) -> None:
    """A run writing many events keeps track only of those perhaps still on their way
    (pruned now and then), not of every one it wrote."""
    agent = Agent("chatty")

    @agent.handler
    async def chat(order: Order, ctx: Context) -> Order:
        for n in range(1000):
            await ctx.emit_event("note", detail=f"note {n}")
            if n % 200 == 199:
                await asyncio.sleep(0.2)  # stored meanwhile
        kept = len(ctx._on_their_way)
        return Order(str(kept))

    await mesh.start_replicas(agent)
    client = await mesh.ingress()
    got = await client.request("chatty", Order("x"), token=mesh.token(), returns=Order)
    assert int(got.item) < 500
