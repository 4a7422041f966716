"""Which lifecycle events a task writes: ``started`` only for handlers that run long (or
for redeliveries), ``completed`` always, with the duration; and that each delivery is
settled only after the event that says how it ended was stored."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg

from jetmesh import Agent, Context, MeshClient, Retry
from jetmesh.envelope import new_id
from jetmesh.runtime.replica import STARTED_AFTER_S
from tests.harness.mesh import Mesh, kinds, until

pytestmark = pytest.mark.integration


class Nap(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Nap/1"

    seconds: float
    fail_first: bool = False


def napper() -> Agent:
    agent = Agent("napper")

    @agent.handler
    async def nap(msg: Nap, ctx: Context) -> Nap:
        if msg.fail_first and ctx.attempt == 1:
            raise Retry(delay=0.05, reason="once more")
        await asyncio.sleep(msg.seconds)
        return msg

    return agent


async def run(mesh: Mesh, nap: Nap) -> list[str]:
    client = await mesh.ingress()
    workflow = new_id()
    assert (
        await client.request("napper", nap, token=mesh.token(), returns=Nap, workflow=workflow)
        == nap
    )
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "completed")))
    assert all(e.verified for e in logged)
    completed = kinds(logged, "completed")
    assert len(completed) == 1
    assert completed[0].event.duration_ms is not None
    assert completed[0].event.duration_ms >= nap.seconds * 1000 * 0.9
    return [e.event.kind for e in logged if e.event.agent == "napper"]


async def test_a_short_task_writes_completed_only(mesh: Mesh) -> None:
    await mesh.start_replicas(napper())
    assert await run(mesh, Nap(0.0)) == ["completed"]


async def test_a_long_task_announces_itself_while_it_runs(mesh: Mesh) -> None:
    await mesh.start_replicas(napper())
    assert await run(mesh, Nap(STARTED_AFTER_S * 6)) == ["started", "completed"]


async def test_an_idle_replica_does_not_wake_to_announce_and_wakes_for_the_next_long_task(
    mesh: Mesh,
) -> None:
    (replica,) = await mesh.start_replicas(napper())
    assert await run(mesh, Nap(0.0)) == ["completed"]
    await until(lambda: not replica._to_announce.is_set(), "the announcer waits, idle")
    assert await run(mesh, Nap(STARTED_AFTER_S * 6)) == ["started", "completed"]
    await until(lambda: not replica._to_announce.is_set(), "and waits again after it")
    assert await run(mesh, Nap(STARTED_AFTER_S * 6)) == ["started", "completed"]


async def test_a_redelivery_announces_itself_at_once(mesh: Mesh) -> None:
    await mesh.start_replicas(napper())
    kinds_seen = await run(mesh, Nap(0.0, fail_first=True))
    assert kinds_seen == ["retried", "started", "completed"]


async def test_each_delivery_is_settled_after_the_event_that_ends_it(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica killed between the two must leave the task unsettled (delivered again),
    never settled with its end missing from the log: when the task is acked, its
    ``completed`` event is stored, not waiting in the publisher's group commit queue (an
    ack goes straight to the socket and may overtake it)."""
    order: list[str] = []
    replicas: list[Any] = []
    emit, ack, nak = MeshClient.emit, Msg.ack, Msg.nak

    async def emit_seen(self: MeshClient, workflow: str, event: Any, **kw: Any) -> None:
        if event.agent == "napper":
            order.append(event.kind)
        await emit(self, workflow, event, **kw)

    async def ack_seen(self: Msg) -> None:
        (replica,) = replicas
        order.append(f"ack, {replica.mesh.publisher.pending} events not stored")
        await ack(self)

    async def nak_seen(self: Msg, delay: float | None = None) -> None:
        order.append("nak")
        await nak(self, delay)

    monkeypatch.setattr(MeshClient, "emit", emit_seen)
    monkeypatch.setattr(Msg, "ack", ack_seen)
    monkeypatch.setattr(Msg, "nak", nak_seen)
    replicas.extend(await mesh.start_replicas(napper()))
    await run(mesh, Nap(0.0, fail_first=True))
    assert order == ["retried", "nak", "started", "completed", "ack, 0 events not stored"]


async def test_a_task_whose_ending_event_is_being_stored_frees_its_slot(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slot (concurrency 1) and each ``completed`` event taking 1.5 s to be stored:
    the second task's handler runs while the first one's delivery settles, so both are
    answered well within the 1.5 s (holding the slot, the second would wait for it)."""
    emit = MeshClient.emit

    async def slow_store(self: MeshClient, workflow: str, event: Any, **kw: Any) -> None:
        if kw.get("stored") and event.agent == "lonely":
            await asyncio.sleep(1.5)
        await emit(self, workflow, event, **kw)

    monkeypatch.setattr(MeshClient, "emit", slow_store)
    agent = Agent("lonely", concurrency=1)

    @agent.handler
    async def nap(msg: Nap, ctx: Context) -> Nap:
        return msg

    (replica,) = await mesh.start_replicas(agent)
    client = await mesh.ingress()
    token = mesh.token()
    started = asyncio.get_running_loop().time()
    replies = await asyncio.gather(
        *(client.request("lonely", Nap(n), token=token, returns=Nap) for n in (1, 2))
    )
    took = asyncio.get_running_loop().time() - started
    assert replies == [Nap(1), Nap(2)]
    assert took < 1.2, f"the second task waited for the first's event: {took:.2f} s"
    assert replica.handled == 0  # neither acked yet: both ending events still being stored
    await until(lambda: replica.handled == 2, "both acked once their events are stored")
