"""The per-role breakdown: queueing, handling and share of the end-to-end time, from hand-built
event logs with known times, and from a real run of a fast router over a slow worker."""

from __future__ import annotations

import logging

import msgspec
import pytest

from jetmesh import Agent, Context
from jetmesh import events as ev
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent, build_tree
from jetmesh.load import RoleShare, role_shares, shares_from_trees
from tests.harness.agents import WORKER, Done, Job, worker_agent
from tests.harness.mesh import Mesh

WF = "01JD0000000000000000000000"
T0 = 1_800_000_000.0
"""The ``accepted`` time of the hand-built workflows."""


def logged(
    kind: str,
    agent: str,
    at_ms: float,
    task: str | None,
    parent: str | None,
    step: str,
    *,
    verified: bool = True,
    **fields: object,
) -> LoggedEvent:
    """An event of ``agent`` at ``at_ms`` milliseconds after :data:`T0`."""
    event = ev.Event(
        kind=kind, agent=agent, at=T0 + at_ms / 1000, task=task, parent=parent, step=step, **fields
    )  # type: ignore[arg-type]
    return LoggedEvent(event, WF, agent, verified, problem="" if verified else "bad signature")


def call(task: str, callee: str, step: str, at_ms: float) -> list[LoggedEvent]:
    return [logged(ev.CALL, "router", at_ms, task, None, "router", target=callee, callee_step=step)]


def reply(task: str, callee: str, step: str, at_ms: float) -> list[LoggedEvent]:
    return [
        logged(ev.REPLY, "router", at_ms, task, None, "router", target=callee, callee_step=step)
    ]


def completed(
    agent: str,
    task: str,
    parent: str | None,
    step: str,
    at_ms: float,
    took_ms: float,
    **fields: object,
) -> list[LoggedEvent]:
    return [logged(ev.COMPLETED, agent, at_ms, task, parent, step, duration_ms=took_ms, **fields)]


def routed(*, parallel: bool, b_verified: bool = True) -> list[LoggedEvent]:
    """``cli`` asks ``router`` at 0 ms, which calls ``worker-a`` and ``worker-b``: one after
    the other (router runs 5..105 ms; a 15..55; b 65..95) or together (router 5..65; a
    15..55; b 15..45). Every hop's task waits 5 ms; a reply takes 5 ms back."""
    a, b = "router/worker-a.1", "router/worker-b.2"
    out = [logged(ev.ACCEPTED, "cli", 0, None, None, "router", target="router")]
    if parallel:
        out += call("r1", "worker-a", a, 10) + call("r1", "worker-b", b, 10)
        out += completed("worker-b", "b1", "r1", b, 45, 30)
        out += reply("r1", "worker-b", b, 50)
        out += completed("worker-a", "a1", "r1", a, 55, 40)
        out += reply("r1", "worker-a", a, 60)
        out += completed("router", "r1", None, "router", 65, 60)
        return out
    out += call("r1", "worker-a", a, 10)
    out += completed("worker-a", "a1", "r1", a, 55, 40)
    out += reply("r1", "worker-a", a, 60) + call("r1", "worker-b", b, 60)
    late_b = completed("worker-b", "b1", "r1", b, 95, 30)
    out += [LoggedEvent(e.event, WF, e.signer, b_verified, problem="x") for e in late_b]
    out += reply("r1", "worker-b", b, 100)
    out += completed("router", "r1", None, "router", 105, 100)
    return out


def by_role(shares: list[RoleShare]) -> dict[str, RoleShare]:
    return {s.role: s for s in shares}


def test_calls_one_after_the_other_share_the_time_by_queue_and_own_handling() -> None:
    shares = shares_from_trees(build_tree(routed(parallel=False)))
    # end to end 105 ms: router 5 queued + 10 its own (100 handled, 90 waiting on calls),
    # worker-a 5 + 40, worker-b 5 + 30; the other 10 ms are the replies on their way back
    assert [s.role for s in shares] == ["worker-a", "worker-b", "router"]
    role = by_role(shares)
    assert role["router"].queue_ms_p50 == pytest.approx(5, abs=1e-3)
    assert role["router"].handle_ms_p50 == pytest.approx(100, abs=1e-3)
    assert role["router"].share == pytest.approx(15 / 105, abs=1e-4)
    assert role["worker-a"].share == pytest.approx(45 / 105, abs=1e-4)
    assert role["worker-b"].share == pytest.approx(35 / 105, abs=1e-4)
    assert role["worker-b"].queue_ms_p99 == pytest.approx(5, abs=1e-3)
    assert role["worker-b"].handle_ms_p99 == pytest.approx(30, abs=1e-3)
    assert sum(s.share for s in shares) == pytest.approx(95 / 105, abs=1e-4)
    assert all(s.hops == 1 for s in shares)


def test_a_call_without_a_reply_event_waits_until_its_callee_completed() -> None:
    """A result is logged once, in its callee's ``completed`` (the caller writes a ``reply``
    event only for an error): the wait ends there, and the reply's way back (5 ms each
    here) counts as the router's own time."""
    logged = [e for e in routed(parallel=False) if e.event.kind != ev.REPLY]
    role = by_role(shares_from_trees(build_tree(logged)))
    assert role["router"].share == pytest.approx(25 / 105, abs=1e-4)
    assert role["worker-a"].share == pytest.approx(45 / 105, abs=1e-4)
    assert role["worker-b"].share == pytest.approx(35 / 105, abs=1e-4)


def test_calls_made_together_count_only_the_one_that_came_back_last() -> None:
    shares = shares_from_trees(build_tree(routed(parallel=True)))
    # end to end 65 ms: router 5 + 10 (60 handled, 50 waiting: 10..60, the calls overlap),
    # worker-a 5 + 40 on the critical path; worker-b ran beside it and finished first
    role = by_role(shares)
    assert shares[0].role == "worker-a"
    assert role["worker-a"].share == pytest.approx(45 / 65, abs=1e-4)
    assert role["router"].share == pytest.approx(15 / 65, abs=1e-4)
    assert role["worker-b"].share == 0.0
    assert role["worker-b"].hops == 1
    assert role["worker-b"].handle_ms_p50 == pytest.approx(30, abs=1e-3)


def test_percentiles_and_hops_across_workflows() -> None:
    def one(took_ms: float, queue_ms: float) -> list[LoggedEvent]:
        return [
            logged(ev.ACCEPTED, "cli", 0, None, None, WORKER, target=WORKER),
            *completed(WORKER, new_id(), None, WORKER, queue_ms + took_ms, took_ms),
        ]

    trees = []
    for i in range(1, 101):  # handled 1..100 ms, queued 100..1 ms
        trees += build_tree(one(float(i), float(101 - i)))
    (only,) = shares_from_trees(trees)
    assert only.hops == 100
    assert only.handle_ms_p50 == pytest.approx(50, abs=1e-3)
    assert only.handle_ms_p99 == pytest.approx(99, abs=1e-3)
    assert only.queue_ms_p50 == pytest.approx(50, abs=1e-3)
    assert only.share == pytest.approx(1.0, abs=1e-6)


def test_an_unverified_hop_is_skipped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="jetmesh.load"):
        shares = shares_from_trees(build_tree(routed(parallel=False, b_verified=False)))
    assert "worker-b" not in by_role(shares)
    assert by_role(shares)["worker-a"].share == pytest.approx(45 / 105, abs=1e-4)
    assert "1 hops skipped" in caplog.text


def test_a_reply_sent_again_from_the_ledger_is_no_run() -> None:
    events = routed(parallel=False)
    again = completed("worker-a", "a1", "r1", "router/worker-a.1", 200, 0.0, reason=ev.FROM_LEDGER)
    shares = by_role(shares_from_trees(build_tree(events + again)))
    assert shares["worker-a"].hops == 1
    assert shares["worker-a"].handle_ms_p50 == pytest.approx(40, abs=1e-3)


def test_a_hop_with_no_known_call_time_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    no_accepted = [e for e in routed(parallel=False) if e.event.kind != ev.ACCEPTED]
    with caplog.at_level(logging.WARNING, logger="jetmesh.load"):
        assert shares_from_trees(build_tree(no_accepted)) == []
    assert "3 hops skipped" in caplog.text


@pytest.mark.integration
async def test_concurrency_below_one_is_refused(mesh: Mesh) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await role_shares(await mesh.ingress(), [new_id()], concurrency=0)


class Ask(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.RouteAsk/1"

    id: int


def fast_router() -> Agent:
    """A router that sends each ask to ``worker`` as a 50 ms job and does nothing else."""
    agent = Agent("router", description="passes each ask to the slow worker")

    @agent.handler
    async def route(ask: Ask, ctx: Context) -> Done:
        return await ctx.call(WORKER, Job(ask.id, sleep_s=0.05), returns=Done)

    return agent


@pytest.mark.integration
async def test_the_slow_worker_behind_a_fast_router_is_the_bottleneck(mesh: Mesh) -> None:
    await mesh.start_replicas(fast_router())
    await mesh.start_replicas(worker_agent("w"))
    client = await mesh.ingress()
    token = mesh.token()
    workflows = [new_id() for _ in range(10)]
    for i, workflow in enumerate(workflows):  # one at a time: nothing queues behind another
        await client.request("router", Ask(i), token=token, returns=Done, workflow=workflow)
    shares = await role_shares(client, workflows, concurrency=4)
    assert [s.role for s in shares] == [WORKER, "router"]  # the bottleneck first
    worker, router = shares
    assert worker.hops == router.hops == 10
    assert worker.handle_ms_p50 >= 50.0  # it sleeps 50 ms
    # the router's handling includes its wait on the worker: its own part is small
    assert router.handle_ms_p50 - worker.handle_ms_p50 < worker.handle_ms_p50
    assert router.queue_ms_p50 < worker.handle_ms_p50 / 2  # near zero next to the work
    assert worker.share > 0.5 > router.share
    assert sum(s.share for s in shares) <= 1.0 + 1e-6
