"""Group commit on servers that enforce the policy, against one compromised role.

Atomic batches are a door of their own: a role may publish batch headers on any subject
its grant allows. Holding only the planner's credentials, an attacker opens more atomic
batches than the stream lets be in flight (their commits never sent) on the tasks and
events streams. Nothing of them is stored, and the mesh's own group commits, refused
("too many in flight"), send each message again alone: every task is stored once and
answered.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from jetmesh import Agent, Context
from jetmesh.bus.connection import connect
from jetmesh.cli.ingress import admin_client
from jetmesh.envelope import new_id
from jetmesh.logins import role_login
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

OPEN_BATCHES = 60
"""More than nats-server lets be in flight on one stream (50)."""
CALLS = 120


class Count(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Count/1"

    n: int


planner = Agent("planner")
counter = Agent("counter")
ran: list[int] = []


@planner.handler
async def plan(job: Count, ctx: Context) -> Count:
    return await ctx.call("counter", job, returns=Count)


@counter.handler
async def count(job: Count) -> Count:
    ran.append(job.n)
    return Count(job.n + 1)


async def _open_batches(mesh: SecuredMesh) -> None:
    """As the planner: start OPEN_BATCHES atomic batches on the counter's task subject
    and on an event subject, and never commit them."""
    s = mesh.settings
    creds = role_login(s, "planner")
    nc = await connect(s.nats_url, "planner/attacker", **creds.nats_options())
    try:
        for n in range(OPEN_BATCHES):
            for subject in (
                f"{s.subject_prefix}.agent.counter.task",
                f"{s.subject_prefix}.event.w{n}.completed",
            ):
                await nc.publish(
                    subject,
                    b'{"planted": true}',
                    headers={"Nats-Batch-Id": f"evil{n}", "Nats-Batch-Sequence": "1"},
                )
        await nc.flush()
    finally:
        await nc.close()


@pytest.mark.parametrize("attacked", [False, True], ids=["alone", "attacked"])
async def test_a_role_holding_every_batch_slot_delays_nothing_into_loss(
    secured: SecuredMesh, attacked: bool
) -> None:
    ran.clear()
    s = secured.settings
    assert (s.group_commit, s.nats_sync_interval) == (None, "always")  # group commit on
    await secured.start_replicas(planner, counter)
    cli = await secured.ingress()
    if attacked:
        await _open_batches(secured)

    answers = await asyncio.gather(
        *(
            cli.request(
                "planner",
                Count(n),
                token=cli.mint_token("alice"),
                returns=Count,
                workflow=new_id(),
                timeout=60,
            )
            for n in range(CALLS)
        )
    )
    assert sorted(a.n for a in answers) == list(range(1, CALLS + 1))
    assert sorted(ran) == list(range(CALLS))  # each ran once
    if attacked:  # the attacker's batches held every slot: each task went alone
        assert (cli.publisher.batches, cli.publisher.refused_batches > 0) == (0, True)
    else:  # the role's grant lets it batch its own tasks
        assert (cli.publisher.batches > 0, cli.publisher.refused_batches) == (True, 0)

    async with admin_client(s) as admin:
        tasks = await admin.js.stream_info(s.tasks_stream)
        assert tasks.state.messages == 2 * CALLS  # the calls to planner and to counter
        events = await admin.js.stream_info(s.events_stream)
        planted = 0
        for seq in range(events.state.first_seq, events.state.last_seq + 1):
            msg = await admin.js.get_msg(s.events_stream, seq)
            planted += msg.data == b'{"planted": true}'
        assert planted == 0
