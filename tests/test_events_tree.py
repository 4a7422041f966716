"""The audit trail as a tree: a two-hop workflow read back verified (the reference meshes'
trees: tests/services/test_support.py and test_research.py)."""

from __future__ import annotations

import pytest

from jetmesh import Agent, Context
from jetmesh.envelope import new_id
from jetmesh.event_log import TaskNode
from tests.harness.mesh import Echo, Mesh, kinds

pytestmark = pytest.mark.integration

router = Agent("router", description="forwards every task to the worker")
worker = Agent("worker", description="shouts")


@router.handler
async def forward(msg: Echo, ctx: Context) -> Echo:
    return await ctx.call("worker", Echo(msg.text + "!"), returns=Echo)


@worker.handler
async def shout(msg: Echo, ctx: Context) -> Echo:
    return Echo(msg.text.upper())


def only_child(node: TaskNode) -> TaskNode:
    assert len(node.children) == 1, node.children
    return node.children[0]


async def test_two_hop_workflow_reads_back_as_a_verified_tree(mesh: Mesh) -> None:
    await mesh.start_replicas(router)
    await mesh.start_replicas(worker)
    client = await mesh.ingress()
    workflow = new_id()
    answer = await client.request(
        "router", Echo("hi"), token=mesh.token("alice"), returns=Echo, workflow=workflow
    )
    assert answer == Echo("HI!")

    roots = await mesh.tree(workflow, hops=2)
    assert len(roots) == 1
    accepted = roots[0]
    assert (accepted.agent, accepted.status, accepted.caller) == ("cli", "accepted", "alice")
    hop1 = only_child(accepted)
    hop2 = only_child(hop1)
    assert hop2.children == []
    for node, agent in ((hop1, "router"), (hop2, "worker")):
        assert node.agent == agent
        assert node.status == "completed"
        assert node.verified, f"{agent}: some event failed verification"
        assert node.caller == "alice", "the caller's identity travels to the last hop"
        assert node.type == "test.Echo/1"
        assert node.duration_ms is not None
        assert node.duration_ms > 0
        assert all(e.signer == agent for e in node.events)
    assert hop2.parent == hop1.task
    assert hop1.duration_ms is not None
    assert hop2.duration_ms is not None
    assert hop1.duration_ms > hop2.duration_ms, "the router waited for the worker"
    call = kinds(hop1.events, "call")
    assert [e.event.target for e in call] == ["worker"]
    assert [(e.event.step, e.event.callee_step) for e in call] == [(hop1.step, hop2.step)]
    assert kinds(hop1.events, "reply") == [], "a result is logged once: by its callee"
    (done,) = kinds(hop2.events, "completed")
    assert done.event.body is not None
    assert bytes(done.event.body.value) == b'{"text":"HI!"}'
    assert done.event.at >= call[0].event.at


async def test_asking_again_reads_back_as_one_entry_answered_from_the_record(mesh: Mesh) -> None:
    """The same request sent again in the same workflow (a caller that timed out and asks
    again): one ingress entry noting it, the second task of the step marked as sent again
    and answered from the record, the worker run once."""
    await mesh.start_replicas(router)
    await mesh.start_replicas(worker)
    client = await mesh.ingress()
    workflow, token = new_id(), mesh.token("alice")
    for _ in range(2):
        answer = await client.request(
            "router", Echo("hi"), token=token, returns=Echo, workflow=workflow
        )
        assert answer == Echo("HI!")
    (root,) = await mesh.tree(workflow, hops=3)
    assert [note.split(" at ")[0] for note in root.notes] == ["asked again"]
    first, again = root.children
    assert (first.step, again.step) == ("router", "router")
    assert again.notes[0] == "sent again: the same step"
    assert "recorded result sent again" in again.detail + " ".join(
        e.event.detail for e in again.events
    )
    assert only_child(first).agent == "worker"
    assert again.children == [], "the worker was not asked again"
