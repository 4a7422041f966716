"""On servers that enforce the policy a role may not read the tasks stream by sequence, and
a task that runs out of deliveries is still dead-lettered with its bytes, its caller
answered and its ``failed`` event written: from what the replica of its last delivery kept
in the role's own Redis keys."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client as NATS

from jetmesh import Agent, CallFailed, Replica
from jetmesh.bus.connection import connect
from jetmesh.bus.streams import advisories_stream
from jetmesh.cli.ingress import admin_client
from jetmesh.dead_letters import list_dead_letters
from jetmesh.envelope import new_id
from jetmesh.event_log import read_events
from jetmesh.logins import role_login
from jetmesh.policy.derive import role_permissions
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration


class Slow(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Slow/1"

    n: int


entered = asyncio.Event()
planner = Agent("planner")


@planner.handler
async def stall(job: Slow) -> Slow:
    entered.set()
    await asyncio.Event().wait()  # until its replica dies
    return job


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """Enforcing servers whose consumers give a task two deliveries of 1.5 s each."""
    mesh = SecuredMesh(tmp_path / "state")
    mesh.settings = mesh.settings.model_copy(update={"ack_wait_s": 1.5, "max_deliver": 2})
    await asyncio.to_thread(mesh.up)
    try:
        yield mesh
    finally:
        try:
            await mesh.aclose()
        finally:
            await asyncio.to_thread(mesh.down)


async def _as_planner(mesh: SecuredMesh) -> NATS:
    """A bare connection with the planner role's own NATS credentials."""
    creds = role_login(mesh.settings, "planner")
    return await connect(mesh.settings.nats_url, "planner/doomed", **creds.nats_options())


async def _take_and_die(mesh: SecuredMesh, *, wait_s: float) -> None:
    """Fetch from the planner's consumer as the planner, then die without acking."""
    nc = await _as_planner(mesh)
    try:
        sub = await nc.jetstream().pull_subscribe_bind("planner", stream=mesh.settings.tasks_stream)
        with contextlib.suppress(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=wait_s)
    finally:
        await nc.close()


async def test_out_of_deliveries_without_reading_the_tasks_stream(strict: SecuredMesh) -> None:
    s = strict.settings
    perms = role_permissions(strict.policy, "planner", s)
    assert not [
        p for p in perms.publish if p.startswith(f"$JS.API.STREAM.MSG.GET.{s.tasks_stream}")
    ]
    assert f"{s.subject_prefix}:last:planner:*" in perms.redis_keys

    cli = await strict.ingress()
    workflow = new_id()
    asked = asyncio.create_task(
        cli.request(
            "planner",
            Slow(1),
            token=cli.mint_token("alice"),
            returns=Slow,
            workflow=workflow,
            timeout=30,
        )
    )
    await _take_and_die(strict, wait_s=5)  # the first delivery
    entered.clear()
    (doomed,) = await strict.start_replicas(planner)  # takes the last one, keeps it
    await asyncio.wait_for(entered.wait(), 10)
    await doomed.mesh.nc.close()  # dies: no ack, no nak, no in-progress any more

    nc = await _as_planner(strict)
    try:  # the role may not read a task by its sequence
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).get_msg(s.tasks_stream, seq=1)
    finally:
        await nc.close()

    async with admin_client(s) as admin:
        await _take_and_die(strict, wait_s=s.ack_wait_s * 2)  # the server gives up on it
        for _ in range(100):
            if (await admin.js.stream_info(advisories_stream(s))).state.messages:
                break
            await asyncio.sleep(0.05)
        replica = Replica(planner, s, strict.keys.identity("planner"), roots=strict.keys.roots())
        strict.replicas.append(replica)
        await replica.start()  # handles the advisory as the planner role

        with pytest.raises(CallFailed) as failed:
            await asyncio.wait_for(asked, 20)
        assert failed.value.reason == "max-deliveries"
        subject = f"{s.subject_prefix}.dlq.planner"
        (letter,) = await list_dead_letters(admin.js, s.dlq_stream, subject)
        envelope = letter.envelope()
        assert envelope is not None, "its bytes were kept"
        assert envelope.workflow == workflow
        assert (letter.reason, letter.owner) == ("max-deliveries", "planner")
        logged = await read_events(cli, workflow)
        failed_events = [e for e in logged if e.event.kind == "failed"]
        assert [(e.event.reason, e.signer, e.verified) for e in failed_events] == [
            ("max-deliveries", "planner", True)
        ]
    await doomed.drain(timeout=0.5)
    strict.replicas.remove(doomed)
