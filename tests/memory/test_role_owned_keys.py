"""What a role records of its own calls, effects and waits (journal, once, wait), and the
events it carries beside a step's result, is in keys only that role's Redis user may
write, on servers started as `jetmesh up` starts them.

A journaled reply is taken by ``ctx.call`` without calling: if another role could write
the caller's journal, it could answer the caller's calls for the callee. Here ``counter``
is the compromised role (its Redis password) and ``planner`` the one it attacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from jetmesh import Agent, Context, MemoryDenied, Retry
from jetmesh.envelope import new_id
from jetmesh.event_log import read_settled
from jetmesh.logins import admin_login, role_login
from jetmesh.memory import keys
from jetmesh.memory.connection import connect
from jetmesh.runtime.ledger import Recorded, StepLedger
from tests.harness.agents import Done, Job, Plan
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

STEP = "planner/counter.1"
"""The step key of planner's first call to counter in a workflow started at planner."""


@pytest.fixture
async def redis_as(secured: SecuredMesh) -> AsyncIterator[dict[str, Redis]]:
    """A Redis connection as each agent role's own user."""
    clients = {
        role: connect(
            secured.settings.redis_url,
            retry_s=0,
            **role_login(secured.settings, role).redis_options(),
        )
        for role in ("planner", "counter")
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def test_a_role_cannot_write_another_roles_journal_once_or_wait_keys(
    secured: SecuredMesh, redis_as: dict[str, Redis]
) -> None:
    prefix, workflow = secured.settings.subject_prefix, new_id()
    planner, counter = redis_as["planner"], redis_as["counter"]
    owned = {
        keys.journal(prefix, workflow, "planner", STEP): b'{"kind":"reply","type":"t","body":1}',
        keys.once(prefix, workflow, "planner", "planner", "charge"): b'{"state":"done"}',
        keys.wait(prefix, workflow, "planner", "planner", "approval"): b"1700000000.0",
        # deleted, planner's re-run would skip its journal: calls sent and models asked again
        keys.begun(prefix, workflow, "planner", "planner"): b"1",
        # events planner's replica sends again when it answers the step from its record:
        # forged ones would fail verification, but deleted ones would be lost
        keys.result_events(prefix, workflow, "planner", "planner"): b"[]",
        # a step named like the attacking role does not bring the key into its patterns
        keys.journal(prefix, workflow, "planner", "counter"): b"planner's",
    }
    for key, value in owned.items():
        await planner.set(key, value, ex=60)

    for key in owned:
        for write in (
            counter.set(key, b"forged"),
            counter.setrange(key, 0, b"forged"),
            counter.delete(key),
            counter.expire(key, 1),
        ):
            with pytest.raises(NoPermissionError):
                await write
        with pytest.raises(NoPermissionError):
            await counter.get(key)
    for key, value in owned.items():
        assert await planner.get(key) == value, f"{key} is as its owner wrote it"
        assert await planner.ttl(key) > 50

    # the ledger of the compromised role gets a typed refusal, not a write
    ledger = StepLedger(counter, prefix, ttl_s=60)
    forged = Recorded(kind="reply", type="t", body=msgspec.Raw(b'"refunded 9999 EUR"'))
    with pytest.raises(MemoryDenied, match=r"journal:planner:"):
        await ledger.journal(workflow, "planner", STEP, forged)
    with pytest.raises(MemoryDenied, match=r"lease:.*:planner:"):
        await ledger.claim(workflow, "planner", "planner/x.1", "counter:1:1", 5000)
    # and its own keys are its own
    await ledger.journal(workflow, "counter", STEP, forged)
    assert await ledger.journaled(workflow, "counter", STEP) == forged


async def test_a_rerun_takes_the_owners_journal_on_enforced_servers(secured: SecuredMesh) -> None:
    """planner fails after its call; the retry gets counter's reply from planner's own
    journal (counter runs once), as on open servers."""
    calls: list[int] = []
    counter = Agent("counter")
    planner = Agent("planner")

    @counter.handler
    async def count(job: Job, ctx: Context) -> Done:
        calls.append(job.id)
        return Done(job.id, "counter", ctx.attempt)

    @planner.handler
    async def plan(p: Plan, ctx: Context) -> Done:
        done = await ctx.call("counter", Job(7), returns=Done)
        if ctx.attempt == 1:
            raise Retry(delay=0.05, reason="fails after its call")
        return Done(done.id, done.by, ctx.attempt)

    await secured.start_replicas(counter, planner)
    cli = await secured.ingress()
    workflow = new_id()
    got = await cli.request(
        "planner",
        Plan(pause_s=0),
        token=cli.mint_token("alice"),
        returns=Done,
        workflow=workflow,
        timeout=15,
    )
    assert got == Done(7, "counter", 2)
    assert calls == [7], "the call was not sent again"
    logged = await read_settled(cli, workflow)
    replies = [e.event for e in logged if e.event.kind == "reply" and e.event.agent == "planner"]
    assert [r.detail for r in replies] == ["from the journal"]

    admin = connect(
        secured.settings.redis_url,
        retry_s=0,
        **admin_login(secured.settings).redis_options(),
    )
    try:
        prefix = secured.settings.subject_prefix
        assert await admin.exists(keys.journal(prefix, workflow, "planner", STEP)) == 1
    finally:
        await admin.aclose()
