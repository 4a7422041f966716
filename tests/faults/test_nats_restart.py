"""nats-server goes away and comes back (file storage): agents and callers reconnect by
themselves, tasks sent after it returns are served, and nothing the stream acknowledged
before or during the outage is lost."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import Agent, KeyStore, MeshClient, MeshSettings, Replica, Subjects
from jetmesh.embedded import NatsServer
from loadtest.tally import wait_all_ran
from tests.faults.tally_mesh import tally_mesh
from tests.harness.mesh import until

pytestmark = [pytest.mark.integration, pytest.mark.fault]


class Ping(msgspec.Struct, frozen=True):
    n: int


def pinger() -> Agent:
    agent = Agent("pinger")

    @agent.handler
    async def ping(msg: Ping) -> Ping:
        return Ping(msg.n + 1)

    return agent


async def burst(client: MeshClient, token: str, start: int, count: int) -> list[Ping]:
    return await asyncio.gather(
        *(
            client.request("pinger", Ping(n), token=token, returns=Ping, timeout=20.0)
            for n in range(start, start + count)
        )
    )


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_mesh_serves_again_after_nats_server_restarts(
    fresh_settings: MeshSettings, fresh_nats_server: NatsServer, how: str
) -> None:
    keys = KeyStore(fresh_settings.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(fresh_settings.subject_prefix)
    keys.issue("pinger", subjects=subjects, ttl_s=600)
    cli = keys.issue("cli", subjects=subjects, ttl_s=600, ingress=True)
    replica = Replica(pinger(), fresh_settings, keys.identity("pinger"), roots=keys.roots())
    await replica.start()
    try:
        async with MeshClient(fresh_settings, cli, roots=keys.roots()) as client:
            token = client.mint_token("alice")
            assert await burst(client, token, 0, 20) == [Ping(n + 1) for n in range(20)]
            if how == "kill":
                fresh_nats_server.kill()
            else:
                fresh_nats_server.stop()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(fresh_nats_server.start)
            for _ in range(100):  # both connections come back by themselves
                if client.nc.is_connected and replica.mesh.nc.is_connected:
                    break
                await asyncio.sleep(0.1)
            assert client.nc.is_connected
            assert replica.mesh.nc.is_connected
            assert await burst(client, token, 100, 20) == [Ping(n + 1) for n in range(100, 120)]
            await until(lambda: replica.handled >= 40, "the tasks acked")
            if how == "stop":
                assert replica.handled == 40
            else:
                # Killed, the server may lose acks it had not yet written out: tasks already
                # answered can be delivered again (at least once). Callers still get exactly
                # one answer each; effects are made idempotent by step keys, not by acks.
                assert replica.handled >= 40
    finally:
        await replica.drain()


LOAD = 600


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_nothing_acknowledged_is_lost_when_nats_server_restarts_mid_load(
    fresh_settings: MeshSettings, fresh_nats_server: NatsServer, how: str
) -> None:
    """nats-server (file storage, sync_interval: always) stops or is SIGKILLed while tasks
    are being sent and handled: every task the stream acknowledged runs, exactly once (a
    delivery whose ack the server lost is answered from the step's recorded result), and
    the replicas and the sender reconnect by themselves."""
    settings = MeshSettings(**{**fresh_settings.model_dump(), "ack_wait_s": 3.0})
    redis = Redis.from_url(settings.redis_url)
    try:
        async with tally_mesh(settings) as mesh:
            load = await mesh.load_under_way(LOAD)
            if how == "kill":
                fresh_nats_server.kill()
            else:
                fresh_nats_server.stop()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(fresh_nats_server.start)

            sent = await load
            runs = await wait_all_ran(redis, settings, [workflow for workflow, _ in sent])
            assert runs.count(0) == 0, f"{runs.count(0)} acknowledged tasks never ran"
            assert [r for r in runs if r != 1] == [], "a handler ran twice"
            assert all(r.mesh.nc.is_connected for r in mesh.replicas)
            dlq = await mesh.client.js.stream_info(settings.dlq_stream)
            assert dlq.state.messages == 0
    finally:
        await redis.aclose()
