"""What a hop may do is the caller's scopes ∩ its agent's grant: a handler asks with
``ctx.require_scope``; outside it, the step fails for good with ``ScopeDenied``, a
``denied`` audit event says who lacked what, and nothing is retried."""

from __future__ import annotations

import jwt
import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, Envelope
from jetmesh.calls import decode_reply
from jetmesh.envelope import new_id
from tests.harness.mesh import Mesh, kinds

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


class Relay(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Relay/1"

    scope: str
    hand_on: list[str] | None = None
    """The scopes to hand the vault (None: all the relay holds)."""


class Relayed(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Relayed/1"

    relay_scopes: list[str]
    vault_scopes: list[str]


def relay() -> Agent:
    """Holds no scope of its own: passes the caller's on to the vault, or fewer."""
    agent = Agent("relay")

    @agent.handler
    async def relay_(req: Relay, ctx: Context) -> Relayed:
        opened = await ctx.call("vault", Open(req.scope), returns=Opened, scopes=req.hand_on)
        return Relayed(sorted(ctx.scopes), opened.scopes)

    return agent


async def test_a_hop_that_holds_nothing_still_hands_on_the_callers_scopes(mesh: Mesh) -> None:
    vault_agent, ran = vault()
    await mesh.start_replicas(vault_agent)
    await mesh.start_replicas(relay())
    client = await mesh.ingress()
    token = mesh.token("alice", scopes=["vault:read", "vault:write"])
    relayed = await client.request("relay", Relay("vault:write"), token=token, returns=Relayed)
    assert relayed == Relayed([], ["vault:read", "vault:write"])
    assert ran == ["vault:write"]


async def test_a_narrowed_call_leaves_the_callee_only_what_it_was_handed(mesh: Mesh) -> None:
    vault_agent, ran = vault()
    await mesh.start_replicas(vault_agent)
    await mesh.start_replicas(relay())
    client = await mesh.ingress()
    token = mesh.token("alice", scopes=["vault:read", "vault:write"])
    workflow = new_id()
    relayed = await client.request(
        "relay", Relay("vault:read", hand_on=["vault:read"]), token=token, returns=Relayed
    )
    assert relayed.vault_scopes == ["vault:read"], "vault:write was not handed on"
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "relay",
            Relay("vault:write", hand_on=["vault:read"]),
            token=token,
            returns=Relayed,
            workflow=workflow,
        )
    assert failed.value.error_type == "ScopeDenied"
    assert ran == ["vault:read"]
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "denied")))
    (denied,) = kinds(logged, "denied")
    assert denied.event.agent == "vault"
    assert denied.event.detail == ("vault:write is not granted to the chain cli -> relay -> vault")
    assert kinds(logged, "retried") == [], "the relay fails for good too"


async def test_a_call_cannot_hand_on_more_than_the_hop_was_given(mesh: Mesh) -> None:
    vault_agent, ran = vault()
    await mesh.start_replicas(vault_agent)
    await mesh.start_replicas(relay())
    client = await mesh.ingress()
    token = mesh.token("alice", scopes=["vault:read"])
    workflow = new_id()
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "relay",
            Relay("vault:read", hand_on=["vault:read", "vault:write"]),
            token=token,
            returns=Relayed,
            workflow=workflow,
        )
    assert failed.value.error_type == "ScopeDenied"
    assert "relay cannot hand on vault:write" in failed.value.message
    assert ran == [], "nothing was sent to the vault"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "failed")))
    (denied,) = kinds(logged, "denied")
    assert (denied.event.agent, denied.event.key) == ("relay", "vault:write")
    assert kinds(logged, "call") == []


async def test_a_call_the_policy_does_not_list_is_refused_before_sending(
    mesh: Mesh, tmp_path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[roles.cli]\ningress = true\ncalls = ["relay"]\n'
        "[roles.relay]\ncalls = []\n"
        '[roles.vault]\nscopes = ["vault:read", "vault:write"]\n'
    )
    mesh.configure(policy_file=policy)
    vault_agent, ran = vault()
    await mesh.start_replicas(vault_agent)
    await mesh.start_replicas(relay())
    client = await mesh.ingress()
    workflow = new_id()
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "relay",
            Relay("vault:read"),
            token=mesh.token("alice", scopes=["vault:read"]),
            returns=Relayed,
            workflow=workflow,
        )
    assert failed.value.error_type == "ScopeDenied"
    assert ran == [], "nothing was sent to the vault"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "failed")))
    (denied,) = kinds(logged, "denied")
    assert (denied.event.agent, denied.event.key) == ("relay", "call:vault")
    assert denied.event.detail == "the policy lets relay call no role, not vault"
    assert kinds(logged, "call") == []


async def test_the_receiver_holds_a_hop_to_the_scopes_its_last_link_hands_on(
    mesh: Mesh,
) -> None:
    """Narrowing enforced where the task arrives, not only where it is sent: a chain made
    by hand (no ``ctx.call`` to check it), whose link hands vault only ``vault:read`` of a
    token that holds ``vault:write`` too. vault acts with ``vault:read`` and is refused
    ``vault:write``."""
    vault_agent, ran = vault()
    await mesh.start_replicas(vault_agent)
    client = await mesh.ingress()
    token = mesh.token("alice", scopes=["vault:read", "vault:write"])
    expires = float(jwt.decode(token, options={"verify_signature": False})["exp"])

    async def open_with(scope: str) -> Envelope:
        workflow = new_id()
        link = client.delegate(
            token, to="vault", workflow=workflow, step="vault",
            scopes=["vault:read"], expires=expires,
        )  # fmt: skip
        return await client.call_envelope(
            "vault", Open(scope), workflow=workflow, caller=token, step="vault", chain=(link,)
        )

    read = decode_reply("vault", await open_with("vault:read"), Opened)
    assert read.scopes == ["vault:read"], "vault:write was not handed on"
    with pytest.raises(CallFailed) as failed:
        decode_reply("vault", await open_with("vault:write"), Opened)
    assert failed.value.error_type == "ScopeDenied"
    assert ran == ["vault:read"]
