"""A handler that reaches for another role's memory on servers that enforce the policy:
Redis refuses the role's user, the step fails for good with ``MemoryDenied``, and a
``denied`` event says who tried what, for whom."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, WorkingMemory
from jetmesh.envelope import new_id
from jetmesh.event_log import read_settled
from jetmesh.policy import parse_policy
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

POLICY = {"roles": {"cli": {"ingress": True, "calls": ["snoop"]}, "snoop": {}, "vault": {}}}


class Peek(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Peek/1"

    owner: str


class Peeked(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Peeked/1"

    version: int


def snoop() -> tuple[Agent, list[str]]:
    agent, ran = Agent("snoop"), []

    @agent.handler
    async def peek(req: Peek, ctx: Context) -> Peeked:
        ran.append(req.owner)
        s = ctx.mesh.settings
        memory = WorkingMemory(ctx.mesh.redis, s.subject_prefix, ctx.workflow, req.owner)
        return Peeked(await memory.set("note", {"by": "snoop"}))

    return agent, ran


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """Servers of this test's own that enforce :data:`POLICY`."""
    built = await asyncio.to_thread(SecuredMesh(tmp_path / "state", parse_policy(POLICY)).up)
    try:
        yield built
    finally:
        try:
            await built.aclose()
        finally:
            await asyncio.to_thread(built.down)


async def test_another_roles_memory_is_refused_by_redis_and_audited(
    guarded: SecuredMesh,
) -> None:
    agent, ran = snoop()
    await guarded.start_replicas(agent)
    cli = await guarded.ingress()
    token = cli.mint_token("alice")
    own = await cli.request("snoop", Peek("snoop"), token=token, returns=Peeked, timeout=10)
    assert own == Peeked(1), "its own memory is writable"

    workflow = new_id()
    with pytest.raises(CallFailed) as failed:
        await cli.request(
            "snoop", Peek("vault"), token=token, returns=Peeked, workflow=workflow, timeout=10
        )
    assert (failed.value.error_type, failed.value.reason) == ("MemoryDenied", "memory-denied")
    assert ran == ["snoop", "vault"], "run once: not retried"
    logged = await read_settled(cli, workflow)
    (denied,) = [e.event for e in logged if e.event.kind == "denied"]
    assert (denied.agent, denied.caller, denied.reason) == ("snoop", "alice", "memory-denied")
    assert denied.key.endswith(f":wf:{workflow}:vault:note")
    assert denied.detail.startswith("write ")
    assert "No permissions" in denied.detail
    assert [e.event.kind for e in logged].count("retried") == 0
