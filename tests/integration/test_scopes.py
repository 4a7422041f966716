"""What a hop may do is the caller's scopes ∩ its agent's grant: a handler asks with
``ctx.require_scope``; outside it, the step fails for good with ``ScopeDenied``, a
``denied`` audit event says who lacked what, and nothing is retried."""

from __future__ import annotations

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context
from jetmesh.envelope import new_id
from tests.integration.harness import Mesh, kinds

pytestmark = pytest.mark.integration


class Open(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Open/1"

    scope: str


class Opened(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Opened/1"

    scopes: list[str]


def vault() -> tuple[Agent, list[str]]:
    agent, ran = Agent("vault", scopes=["vault:read", "vault:write"]), []

    @agent.handler
    async def open_(req: Open, ctx: Context) -> Opened:
        await ctx.require_scope(req.scope, what="open the vault")
        ran.append(req.scope)
        return Opened(sorted(ctx.scopes))

    return agent, ran


async def test_a_hop_may_use_what_both_the_caller_and_its_agent_hold(mesh: Mesh) -> None:
    agent, ran = vault()
    await mesh.start_replicas(agent)
    client = await mesh.ingress()
    token = mesh.token("alice", scopes=["vault:read", "refund:write"])
    opened = await client.request("vault", Open("vault:read"), token=token, returns=Opened)
    assert opened == Opened(["vault:read"]), "refund:write is the caller's, not the vault's"
    assert ran == ["vault:read"]


@pytest.mark.parametrize(
    ("caller_scopes", "scope", "lacking"),
    [
        (["vault:read"], "vault:write", "the caller alice"),
        (["refund:write"], "refund:write", "the agent vault"),
        ([], "refund:write", "the caller alice and the agent vault"),
    ],
)
async def test_a_scope_outside_the_intersection_is_denied_and_audited(
    mesh: Mesh, caller_scopes: list[str], scope: str, lacking: str
) -> None:
    agent, ran = vault()
    await mesh.start_replicas(agent)
    client = await mesh.ingress()
    workflow = new_id()
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "vault",
            Open(scope),
            token=mesh.token("alice", scopes=caller_scopes),
            returns=Opened,
            workflow=workflow,
        )
    assert failed.value.error_type == "ScopeDenied"
    assert ran == []
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "failed")))
    (denied,) = kinds(logged, "denied")
    assert denied.event.key == scope
    assert denied.event.reason == "scope-denied"
    assert denied.event.target == "open the vault"
    assert denied.event.detail == f"{scope} is not granted to {lacking}"
    assert denied.event.caller == "alice"
    assert kinds(logged, "retried") == [], "a denied scope is not retried"
    (dead,) = await mesh.wait_dead_letters("vault", "scope-denied")
    assert lacking in dead.detail
