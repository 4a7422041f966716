"""A caller token that expires while its workflow runs: the next hop refuses it, and the
step that called fails for good at once (no retry can make the token valid again), with
an error its own caller accepts, since one carrying the expired token would be refused
too."""

from __future__ import annotations

import asyncio
import time

import jwt
import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context
from jetmesh.envelope import new_id
from tests.harness.mesh import Mesh, kinds

pytestmark = pytest.mark.integration

SKEW_S = 0.5


class Relay(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Relay/1"

    hold_until: float
    """Unix time the relay waits for before it calls on (past the token's expiry)."""


class Ping(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Ping/1"


class Pong(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Pong/1"


def agents() -> tuple[Agent, Agent, list[int]]:
    relay, echo, attempts = Agent("relay"), Agent("echo"), []

    @relay.handler
    async def forward(req: Relay, ctx: Context) -> Pong:
        attempts.append(ctx.attempt)
        await asyncio.sleep(max(0.0, req.hold_until - time.time()))
        return await ctx.call("echo", Ping(), returns=Pong, timeout=10)

    @echo.handler
    async def pong(_: Ping, ctx: Context) -> Pong:
        return Pong()

    return relay, echo, attempts


async def test_a_call_refused_for_the_expired_token_fails_the_step_for_good(mesh: Mesh) -> None:
    mesh.configure(clock_skew_s=SKEW_S)
    relay, echo, attempts = agents()
    await mesh.start_replicas(relay)
    await mesh.start_replicas(echo)
    client = await mesh.ingress()
    token = mesh.token("alice", ttl_s=1)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    workflow = new_id()
    began = time.monotonic()
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "relay",
            Relay(hold_until=expires + SKEW_S + 0.3),
            token=token,
            returns=Pong,
            workflow=workflow,
            timeout=20,
        )
    assert (failed.value.agent, failed.value.reason) == ("relay", "expired-token")
    assert time.monotonic() - began < 10, "answered, not left to the timeout"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "failed")))
    assert attempts == [1], "not retried: the token will not verify again"
    assert kinds(logged, "retried") == []
    (ended,) = [e for e in kinds(logged, "failed") if e.event.agent == "relay"]
    assert ended.event.reason == "expired-token"
    assert (ended.verified, ended.problem) == (True, ""), "it acts for no caller: it verifies"
    assert [e.event.agent for e in kinds(logged, "completed")] == []
