"""Hierarchical: orchestrators whose workers are orchestrators. The event tree nests; a
runaway plan is refused by ``max_call_depth`` and ``max_fan_out`` with typed errors before
it floods the bus, and a task nested too deep by another publisher is refused on arrival."""

from __future__ import annotations

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, ErrorBody, MeshClient
from jetmesh.envelope import decode_body, decode_envelope, new_id
from jetmesh.patterns import fan_out
from tests.harness.mesh import Mesh, kinds, rejected

pytestmark = pytest.mark.integration


class Goal(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Goal/1"

    name: str
    width: int = 2


class Result(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Result/1"

    name: str
    parts: list[str] = []


lead = Agent("lead", description="splits a goal among managers")
manager = Agent("manager", description="splits a part among workers")
worker = Agent("worker", description="does one piece")
spawner = Agent("spawner", description="a runaway plan: every task splits again")


@lead.handler
async def plan(goal: Goal, ctx: Context) -> Result:
    parts = [Goal(f"{goal.name}.{i}", goal.width) for i in range(1, goal.width + 1)]
    done = await fan_out(ctx, "manager", parts, returns=Result)
    return Result(goal.name, [p for r in done.values for p in r.parts])


@manager.handler
async def manage(goal: Goal, ctx: Context) -> Result:
    pieces = [Goal(f"{goal.name}.{i}") for i in range(1, goal.width + 1)]
    done = await fan_out(ctx, "worker", pieces, returns=Result)
    return Result(goal.name, [r.name for r in done.values])


@worker.handler
async def do(goal: Goal) -> Result:
    return Result(goal.name)


@spawner.handler
async def spawn(goal: Goal, ctx: Context) -> Result:
    more = [Goal(f"{goal.name}.{i}", goal.width) for i in range(1, goal.width + 1)]
    done = await fan_out(ctx, "spawner", more, returns=Result)
    return Result(goal.name, [p for r in done.values for p in r.parts])


async def stored_tasks(client: MeshClient, mesh: Mesh) -> list[str]:
    """The step of every task in the tasks stream (what reached the bus)."""
    info = await client.js.stream_info(mesh.settings.tasks_stream)
    steps = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await client.js.get_msg(mesh.settings.tasks_stream, seq)
        steps.append(decode_envelope(raw.data or b"").step)
    return steps


async def test_nested_orchestrators_nest_in_the_event_tree(mesh: Mesh) -> None:
    for agent in (lead, manager, worker):
        await mesh.start_replicas(agent)
    client = await mesh.ingress()
    workflow = new_id()
    result = await client.request(
        "lead", Goal("g"), token=mesh.token(), returns=Result, workflow=workflow
    )
    assert result == Result("g", ["g.1.1", "g.1.2", "g.2.1", "g.2.2"])
    (root,) = await mesh.tree(workflow, hops=7)
    (top,) = root.children
    assert top.agent == "lead"
    assert [m.step for m in sorted(top.children, key=lambda n: n.step)] == [
        "lead/manager.1",
        "lead/manager.2",
    ]
    for middle in top.children:
        assert middle.agent == "manager"
        assert sorted(w.step for w in middle.children) == [
            f"{middle.step}/worker.1",
            f"{middle.step}/worker.2",
        ]
        assert all(w.agent == "worker" and not w.children for w in middle.children)


async def test_a_plan_too_deep_is_refused_before_it_floods_the_bus(mesh: Mesh) -> None:
    mesh.configure(max_call_depth=3)
    await mesh.start_replicas(spawner)
    client = await mesh.ingress()
    workflow = new_id()
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "spawner", Goal("s"), token=mesh.token(), returns=Result, workflow=workflow
        )
    assert failed.value.reason == "plan-too-deep"
    assert failed.value.error_type == "PlanTooDeep"

    logged = await mesh.wait_events(workflow, lambda got: len(kinds(got, "failed")) >= 3)
    refused = kinds(logged, "call-refused")
    assert refused, "the deepest tasks recorded the calls they did not send"
    assert {e.event.reason for e in refused} == {"plan-too-deep"}
    assert all(e.event.callee_step.count("/") == 4 for e in refused)
    steps = await stored_tasks(client, mesh)
    assert max(step.count("/") for step in steps) == 3, "nothing deeper reached the bus"
    assert len(steps) <= 1 + 2 + 4 + 8
    assert {e.event.reason for e in kinds(logged, "failed")} == {"plan-too-deep"}, "no retries"
    assert not kinds(logged, "retried")


async def test_a_fan_out_over_the_limit_sends_nothing(mesh: Mesh) -> None:
    mesh.configure(max_fan_out=10)
    await mesh.start_replicas(spawner)
    client = await mesh.ingress()
    workflow = new_id()
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "spawner", Goal("s", width=100), token=mesh.token(), returns=Result, workflow=workflow
        )
    assert (failed.value.reason, failed.value.error_type) == ("fan-out-exceeded", "FanOutExceeded")
    assert await stored_tasks(client, mesh) == ["spawner"], "not one of the 100 was sent"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "failed")))
    (refused,) = kinds(logged, "call-refused")
    assert (refused.event.target, refused.event.callee_step) == ("spawner", "spawner/spawner.11")
    assert "max_fan_out 10" in refused.event.detail
    (dead,) = await mesh.wait_dead_letters("spawner", "fan-out-exceeded")
    assert decode_envelope(dead.data).step == "spawner"


async def test_a_task_nested_too_deep_by_another_publisher_is_refused(mesh: Mesh) -> None:
    mesh.configure(max_call_depth=3)
    await mesh.start_replicas(worker)
    await mesh.ingress()
    sealed = mesh.seal(Goal("x"), to="worker", token=mesh.token(), step="a/b.1/c.1/d.1/e.1")
    reply = mesh.expect_reply(sealed.envelope)
    attacker = await mesh.attacker()
    await attacker.publish(mesh.subjects.task("worker"), sealed.data, sealed.headers)
    error = decode_body(await reply, ErrorBody)
    assert (error.error_type, error.reason) == ("PlanTooDeep", "plan-too-deep")
    (dead,) = await mesh.wait_dead_letters("worker", "plan-too-deep")
    assert dead.data == sealed.data
    workflow = sealed.envelope.workflow
    logged = await mesh.wait_events(workflow, lambda got: bool(rejected(got, "plan-too-deep")))
    (audit,) = rejected(logged, "plan-too-deep", "worker")
    assert "nested 4 calls deep (max_call_depth 3)" in audit.event.detail
