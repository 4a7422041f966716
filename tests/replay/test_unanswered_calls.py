"""A call's reply in the log: a result is its callee's ``completed`` event (the caller
writes no ``reply`` for it), and a call its handler gave up on says so in a ``reply``
without a body, so a result that came after is not taken for the call's reply."""

from __future__ import annotations

import asyncio
import json

import pytest

from jetmesh import Agent, Context
from jetmesh import events as ev
from jetmesh.envelope import new_id
from jetmesh.replay import history
from tests.harness.mesh import Echo, Mesh, jetmesh, kinds

pytestmark = pytest.mark.integration

impatient = Agent("impatient", description="asks slow and quick, waits 0.3 s for slow")
slow = Agent("slow", description="answers after a second")
quick = Agent("quick", description="answers at once")


@impatient.handler
async def ask(msg: Echo, ctx: Context) -> Echo:
    try:  # wait_for cancels the call when its time is up
        late = await asyncio.wait_for(ctx.call("slow", msg, returns=Echo), 0.3)
    except TimeoutError:
        late = Echo("gave up")
    fast = await ctx.call("quick", msg, returns=Echo)
    return Echo(f"{late.text}, {fast.text}")


@slow.handler
async def answer_late(msg: Echo, ctx: Context) -> Echo:
    await asyncio.sleep(1.0)
    return Echo("slow " + msg.text)


@quick.handler
async def answer(msg: Echo, ctx: Context) -> Echo:
    return Echo("quick " + msg.text)


async def test_a_cancelled_call_is_logged_as_unanswered_and_a_late_result_is_not_its_reply(
    mesh: Mesh,
) -> None:
    for agent in (impatient, slow, quick):
        await mesh.start_replicas(agent)
    client = await mesh.ingress()
    workflow = new_id()
    got = await client.request(
        "impatient", Echo("hi"), token=mesh.token(), returns=Echo, workflow=workflow
    )
    assert got == Echo("gave up, quick hi")
    await mesh.tree(workflow, hops=3)  # the slow one's late `completed` too

    logged = await mesh.events(workflow)
    replies = [e.event for e in kinds(logged, "reply")]
    assert [(e.callee_step, e.reason, e.body) for e in replies] == [
        ("impatient/slow.1", ev.CANCELLED, None)
    ], "the quick call's result is its callee's `completed`, not a `reply`"
    late = [e.event for e in kinds(logged, "completed") if e.event.agent == "slow"]
    assert len(late) == 1, "the slow callee finished after all"

    recorded = await history(client, workflow)
    (task,) = [t for t in recorded.tasks() if t.agent == "impatient"]
    gave_up, asked = task.calls
    assert (gave_up.unanswered, gave_up.reply) == (ev.CANCELLED, None)
    assert asked.unanswered == ""
    assert asked.reply is not None
    assert bytes(asked.reply.body or b"") == b'{"text":"quick hi"}'
    assert asked.duration_ms is not None
    assert asked.duration_ms >= 0.0

    code, out, err = await jetmesh(mesh, "replay", workflow, "--width=200")
    assert code == 0, err
    assert "none: cancelled" in out
    assert 'test.Echo/1 {"text":"quick hi"}' in out
    code, out, err = await jetmesh(mesh, "replay", workflow, "--json")
    assert code == 0, err
    (root,) = json.loads(out)["tasks"]
    calls = {c["step"]: c for c in root["children"][0]["calls"]}
    assert calls["impatient/slow.1"]["unanswered"] == ev.CANCELLED
    assert calls["impatient/slow.1"]["reply"] is None
    assert calls["impatient/quick.2"]["reply"]["body"] == {"text": "quick hi"}
