"""A task whose replicas keep dying before they ack is dead-lettered, not left hanging,
even when no replica of its role is running as it runs out of deliveries."""

from __future__ import annotations

import asyncio

import msgspec
import nats.errors
import pytest

from jetmesh import Agent, KeyStore, MeshClient, MeshSettings, Replica, Subjects
from jetmesh.bus.connection import connect
from jetmesh.bus.streams import advisories_stream, ensure_consumer
from jetmesh.dead_letters import REASON_HEADER
from jetmesh.event_log import read_events
from jetmesh.ingress import ingress_task

pytestmark = pytest.mark.integration


class Job(msgspec.Struct, frozen=True):
    n: int


agent = Agent("crashy")


@agent.handler
async def handle(job: Job) -> Job:
    return job


async def test_task_out_of_deliveries_by_crash_is_dead_lettered(settings: MeshSettings) -> None:
    s = settings.model_copy(update={"ack_wait_s": 1.5, "max_deliver": 2})
    keys = KeyStore(s.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(s.subject_prefix)
    keys.issue("crashy", subjects=subjects, ttl_s=600)
    cli = keys.issue("cli", subjects=subjects, ttl_s=600, ingress=True)
    async with MeshClient(s, cli, roots=keys.roots()) as mesh:
        token = mesh.mint_token("alice")
        await ensure_consumer(mesh.js, s, "crashy")
        task = await ingress_task(
            mesh, "crashy", Job(1), token=token, workflow="01JD0000000000000000000000"
        )
        await mesh.send_task(task)
        # A "replica" that takes the task twice and dies each time (never acks).
        nc = await connect(s.nats_url, "doomed")
        try:
            sub = await nc.jetstream().pull_subscribe_bind("crashy", stream=s.tasks_stream)
            first = await sub.fetch(1, timeout=5)
            assert first[0].metadata.num_delivered == 1
            second = await sub.fetch(1, timeout=5)
            assert second[0].metadata.num_delivered == 2
            # Asking again after AckWait makes the server give up on the task and announce
            # it; then this "replica" dies too, before anything could act on the advisory.
            with pytest.raises(nats.errors.TimeoutError):
                await sub.fetch(1, timeout=s.ack_wait_s * 2)
        finally:
            await nc.close()
        # The advisory was published while no replica listened: the advisories stream kept it.
        advisories = advisories_stream(s)
        for _ in range(100):
            if (await mesh.js.stream_info(advisories)).state.messages == 1:
                break
            await asyncio.sleep(0.1)
        assert (await mesh.js.stream_info(advisories)).state.messages == 1
        replica = Replica(agent, s, keys.identity("crashy"), roots=keys.roots())
        await replica.start()
        try:
            dlq = await mesh.js.subscribe(subjects.dlq("crashy"), stream=s.dlq_stream)
            dead = await dlq.next_msg(timeout=10)
            assert dead.headers is not None
            assert dead.headers[REASON_HEADER] == "max-deliveries"
            assert dead.data == first[0].data  # the original bytes, signature headers kept
            assert replica.handled == 0
            for _ in range(50):
                events = await read_events(mesh, task.workflow)
                if any(e.event.kind == "failed" for e in events):
                    break
                await asyncio.sleep(0.1)
            failed = [e for e in events if e.event.kind == "failed"]
            assert len(failed) == 1
            assert failed[0].event.reason == "max-deliveries"
            assert failed[0].verified
        finally:
            await replica.drain()
