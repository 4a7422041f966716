"""A poison task (its handler fails on every delivery) is retried with backoff, then
dead-lettered with its reason, while the other tasks of the same role keep flowing through
the same replicas. (Its effect on their latency is measured by ``make poison``.)"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context
from jetmesh.envelope import new_id
from tests.harness.mesh import Mesh, kinds

pytestmark = [pytest.mark.integration, pytest.mark.fault]


class Item(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Item/1"

    n: int
    poison: bool = False


def sorter() -> tuple[Agent, list[int]]:
    agent, attempts = Agent("sorter", concurrency=8), []

    @agent.handler
    async def sort(item: Item, ctx: Context) -> Item:
        if item.poison:
            attempts.append(ctx.attempt)
            raise ValueError("cannot parse this item")
        await asyncio.sleep(0.002)
        return item

    return agent, attempts


async def test_a_poison_task_is_dead_lettered_and_the_others_flow(mesh: Mesh) -> None:
    mesh.configure(max_deliver=3, retry_backoff_s=(0.3, 0.6))
    agent, poison_attempts = sorter()
    await mesh.start_replicas(agent, count=2)
    client = await mesh.ingress()
    token = mesh.token()
    workflow = new_id()
    poisoned = asyncio.create_task(
        client.request(
            "sorter", Item(-1, poison=True), token=token, returns=Item, workflow=workflow
        )
    )
    room = asyncio.Semaphore(16)
    finished_during_retries = 0

    async def normal(n: int) -> Item:
        nonlocal finished_during_retries
        async with room:
            item = await client.request("sorter", Item(n), token=token, returns=Item)
        if not poisoned.done():
            finished_during_retries += 1
        return item

    items = await asyncio.gather(*(normal(n) for n in range(300)))
    with pytest.raises(CallFailed) as failed:
        await poisoned

    assert items == [Item(n) for n in range(300)]
    assert finished_during_retries > 0, "the others did not wait for the poison task"
    assert poison_attempts == [1, 2, 3]
    assert failed.value.error_type == "ValueError"
    (dead,) = await mesh.wait_dead_letters("sorter", "max-deliveries")
    assert "ValueError" in dead.detail
    assert msgspec.json.decode(dead.data)["workflow"] == workflow
    logged = await mesh.wait_events(workflow, lambda got: len(kinds(got, "failed")) == 1)
    assert len(kinds(logged, "retried")) == 2
    assert kinds(logged, "failed")[0].event.reason == "max-deliveries"
