"""Replay: a workflow through real replicas, its history rebuilt from MESH_EVENTS, and its
tasks run again with the same or changed code against that history."""

from __future__ import annotations

import json
import re
from typing import NamedTuple

import msgspec
import pytest

from jetmesh import Event, EventPayload, MeshClient, WorkingMemory
from jetmesh.envelope import new_id
from jetmesh.replay import DIVERGED, SAME, SKIPPED, RerunReport, TaskReplay, history, rerun
from jetmesh.runtime.agent import Agent
from tests.harness import replay_agents as shop_code
from tests.harness.mesh import REPO_ROOT, Mesh, jetmesh
from tests.harness.replay_agents import SOLD_OUT, Count, Order, Receipt

pytestmark = pytest.mark.integration

SHOP = "shop"
STOCK = "shop/stock.1"
PRICER = "shop/pricer.2"


class Run(NamedTuple):
    workflow: str
    receipt: Receipt
    client: MeshClient


@pytest.fixture
async def shop(mesh: Mesh) -> Run:
    """A ``shop`` workflow run through real replicas, its events all stored."""
    shop_code.charges.clear()
    for agent in (shop_code.shop, shop_code.stock, shop_code.pricer):
        await mesh.start_replicas(agent)
    client = await mesh.ingress()
    workflow = new_id()
    receipt = await client.request(
        "shop", Order("apple", 2), token=mesh.token("alice"), returns=Receipt, workflow=workflow
    )
    await mesh.tree(workflow, hops=3)
    return Run(workflow, receipt, client)


async def rerun_with(mesh: Mesh, run: Run, *agents: Agent) -> RerunReport:
    recorded = await history(run.client, run.workflow)
    return await rerun(recorded, agents, redis=run.client.redis, settings=mesh.settings)


def by_step(report: RerunReport) -> dict[str, TaskReplay]:
    return {t.step: t for t in report.tasks}


def decoded(raw: msgspec.Raw | None) -> object:
    assert raw is not None
    return msgspec.json.decode(raw)


async def test_history_has_inputs_calls_effects_and_results(shop: Run) -> None:
    assert shop.receipt == Receipt("apple", 5, 6, 1001)
    recorded = await history(shop.client, shop.workflow)
    (accepted,) = recorded.roots
    assert accepted.node.task is None
    assert accepted.input is not None
    assert decoded(accepted.input.body) == {"item": "apple", "qty": 2}
    tasks = {t.step: t for t in recorded.tasks()}
    assert list(tasks) == [SHOP, STOCK, PRICER], "callers first, then their calls in order"

    root = tasks[SHOP]
    assert (root.agent, root.status, root.node.caller) == ("shop", "completed", "alice")
    assert root.identity is not None
    assert root.identity.subject == "alice"
    assert root.input is not None
    assert root.input.type == "test.Order/1"
    assert [(c.step, c.target) for c in root.calls] == [(STOCK, "stock"), (PRICER, "pricer")]
    stock_call, price_call = root.calls
    assert stock_call.sent is not None
    assert decoded(stock_call.sent.body) == {"item": "apple", "qty": 2}
    assert stock_call.reply is not None
    assert (stock_call.reply.type, decoded(stock_call.reply.body)) == ("test.Count/1", {"n": 5})
    assert price_call.reply is not None
    assert decoded(price_call.reply.body) == {"n": 3}
    assert price_call.duration_ms is not None
    assert list(root.effects) == ["charge"]
    assert decoded(root.effects["charge"].body) == 1001
    assert root.result is not None
    assert root.result.type == "test.Receipt/1"
    assert decoded(root.result.body) == msgspec.to_builtins(shop.receipt)
    assert root.node.duration_ms is not None

    callee = tasks[STOCK]
    assert callee.agent == "stock"
    assert callee.input == stock_call.sent, "a callee's input is what its caller sent"
    assert callee.result is not None
    assert decoded(callee.result.body) == {"n": 5}


async def test_rerun_with_the_same_code_is_the_same_and_touches_nothing(
    mesh: Mesh, shop: Run
) -> None:
    memory = WorkingMemory(shop.client.redis, mesh.settings.subject_prefix, shop.workflow, "shop")
    assert await memory.get_versioned("runs", int) == (1, 1)
    assert shop_code.charges == [6]

    report = await rerun_with(mesh, shop, shop_code.shop, shop_code.stock, shop_code.pricer)

    assert not report.diverged
    assert [(t.step, t.status) for t in report.tasks] == [
        (SHOP, SAME),
        (STOCK, SAME),
        (PRICER, SAME),
    ]
    root = by_step(report)[SHOP]
    assert (root.calls, root.effects) == (2, 1), "both calls and the effect came from the history"
    assert shop_code.charges == [6], "the effect was not run again"
    assert await memory.get_versioned("runs", int) == (1, 1), "the workflow's memory is untouched"
    scratch = [
        k async for k in shop.client.redis.scan_iter(f"{mesh.settings.subject_prefix}:replay:*")
    ]
    assert scratch == [], "the re-run's scratch memory is deleted"


@pytest.mark.parametrize(
    ("changed", "step", "what", "expected", "got", "changes"),
    [
        (shop_code.shop_other_target, STOCK, "target", "stock", "warehouse", ()),
        (shop_code.shop_other_body, PRICER, "body", '"qty":2', '"qty":3', ("qty: 2 -> 3",)),
        (shop_code.shop_other_result, SHOP, "result", '"total":6', '"total":7', ("total: 6 -> 7",)),
        (shop_code.shop_no_charge, SHOP, "extra-effect", "", "", ()),
        (shop_code.shop_waits, SHOP, "extra-signal", "", "", ()),
    ],
    ids=["other-target", "other-body", "other-result", "other-effect", "a-wait"],
)
async def test_changed_code_diverges_at_its_step(
    mesh: Mesh,
    shop: Run,
    changed: Agent,
    step: str,
    what: str,
    expected: str,
    got: str,
    changes: tuple[str, ...],
) -> None:
    report = await rerun_with(mesh, shop, changed, shop_code.stock, shop_code.pricer)

    assert report.diverged
    tasks = by_step(report)
    assert tasks[SHOP].status == DIVERGED
    assert (tasks[STOCK].status, tasks[PRICER].status) == (SAME, SAME), "callees' code is unchanged"
    (divergence,) = tasks[SHOP].divergences
    assert (divergence.step, divergence.what) == (step, what)
    assert expected in divergence.expected
    assert got in divergence.got
    assert divergence.changes == changes, "each changed field, and only those"
    assert shop_code.charges == [6], "no effect ran during the re-run"


async def test_a_failed_call_replays_as_the_same_error(mesh: Mesh, shop: Run) -> None:
    workflow = new_id()
    receipt = await shop.client.request(
        "shop", Order(SOLD_OUT, 1), token=mesh.token("alice"), returns=Receipt, workflow=workflow
    )
    assert receipt.in_stock == 0, "stock refused: the shop took the error as none in stock"
    await mesh.tree(workflow, hops=3)
    run = shop._replace(workflow=workflow)
    recorded = {t.step: t for t in (await history(run.client, workflow)).tasks()}
    assert recorded[STOCK].status == "failed"
    reply = recorded[SHOP].calls[0].reply
    assert reply is not None
    assert reply.error == "rejected-by-handler"

    report = await rerun_with(mesh, run, shop_code.shop, shop_code.stock)

    tasks = by_step(report)
    assert (tasks[SHOP].status, tasks[STOCK].status, tasks[PRICER].status) == (SAME, SAME, SKIPPED)
    assert "failed as recorded (Reject: sold out)" in tasks[STOCK].notes
    assert tasks[PRICER].notes == ["agent not given"]


async def test_an_event_over_the_max_payload_keeps_no_body(mesh: Mesh) -> None:
    client = await mesh.ingress()
    workflow = new_id()
    big = msgspec.Raw(msgspec.json.encode(["x" * mesh.settings.max_payload_bytes]))
    small = msgspec.Raw(msgspec.json.encode(["x" * 100]))
    for step, body in (("big", big), ("small", small)):
        event = Event(
            kind="accepted",
            agent="cli",
            at=0.0,
            step=step,
            target=step,
            body=EventPayload(type="test.List/1", value=body),
        )
        await client.emit(workflow, event, caller=mesh.token())
    await client.flush_events()

    recorded = await history(client, workflow, timeout=0.5)

    inputs = {root.node.step: root.input for root in recorded.roots}
    assert inputs["big"] is not None
    assert inputs["big"].body is None
    assert (inputs["big"].type, inputs["big"].missing) == (
        "test.List/1",
        "omitted: over the maximum payload",
    )
    assert inputs["small"] is not None
    assert inputs["small"].body == small


async def test_cli_shows_the_history_and_reruns_it(
    mesh: Mesh, shop: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    code, out, err = await jetmesh(mesh, "replay", shop.workflow)
    assert code == 0, err
    assert f"workflow {shop.workflow}" in out
    assert re.search(r"shop  shop  completed  [0-9.]+ ms  caller=alice", out), out
    assert f"call   {STOCK} -> stock: test.Order/1" in out
    assert "effect charge: int 1001" in out
    assert 'out    test.Receipt/1 {"item":"apple","in_stock":5,"total":6,"charge":1001}' in out

    module = "tests.harness.replay_agents"
    same = [f"--agent={module}:{name}" for name in ("shop", "stock", "pricer")]
    code, out, err = await jetmesh(mesh, "replay", shop.workflow, "--rerun", *same)
    assert code == 0, out + err
    assert "re-run of 3 task(s): 3 same, 0 diverged, 0 skipped" in out

    changed = [f"--agent={module}:shop_other_body", f"--agent={module}:pricer"]
    code, out, err = await jetmesh(mesh, "replay", shop.workflow, "--rerun", *changed)
    assert code == 1, out + err
    assert f"body at {PRICER}: call to pricer sent another body" in out
    assert 'expected test.Order/1 {"item":"apple","qty":2}' in out
    assert 'got      test.Order/1 {"item":"apple","qty":3}' in out
    assert "changed  qty: 2 -> 3" in out
    assert "re-run of 3 task(s): 1 same, 1 diverged, 1 skipped" in out

    code, out, err = await jetmesh(mesh, "replay", shop.workflow, "--rerun", "--width=20", *changed)
    assert code == 1, out + err
    assert 'expected test.Order/1 {"it...' in out, "--width cuts the bodies shown"
    assert "changed  qty: 2 -> 3" in out, "the changed field is shown whatever the width"

    code, out, err = await jetmesh(mesh, "replay", shop.workflow, "--json", "--rerun", *changed)
    assert code == 1, err
    data = json.loads(out)
    (accepted,) = data["tasks"]
    (root,) = accepted["children"]
    assert root["calls"][1]["reply"]["body"] == msgspec.to_builtins(Count(3))
    statuses = {t["step"]: t["status"] for t in data["rerun"]["tasks"]}
    assert statuses == {SHOP: DIVERGED, STOCK: SKIPPED, PRICER: SAME}
    assert shop_code.charges == [6]


async def test_cli_replay_of_an_unknown_workflow(mesh: Mesh) -> None:
    await mesh.ingress()
    code, out, _ = await jetmesh(mesh, "replay", "01JD0000000000000000000000")
    assert code == 1
    assert "no events for workflow 01JD0000000000000000000000" in out
