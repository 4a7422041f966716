"""A real run through the nats door: the shipped echo agent on the session servers, 2 s at
50 requests a second, as the cli ingress; the report written and read back. And how the
door counts a second reply to one task."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec

from jetmesh import Agent, Context
from jetmesh import events as ev
from jetmesh.envelope import Envelope, encode_envelope, new_id
from jetmesh.load import Scenario, nats_door, read_report, run_scenario, write_report
from jetmesh.load.doors import _Replies, _Sample
from jetmesh.load.echo import agent as echo_agent
from tests.harness.mesh import Mesh


async def test_the_echo_agent_at_50_a_second(mesh: Mesh, tmp_path: Path) -> None:
    await mesh.start_replicas(echo_agent)
    scenario = Scenario.model_validate(
        {
            "name": "single-hop",
            "agent": "echo",
            "payload": {"template": '{"text": "hello {n}", "id": "{uuid}"}'},
            "arrival": {"model": "constant", "rate": 50},
            "seconds": 2,
            "timeout_s": 10,
            "slo": {"p99_ms": 5000, "no_loss": True, "error_rate": 0},
        }
    )
    async with nats_door(scenario, mesh.settings) as door:
        report = await run_scenario(scenario, door.send, duplicates=door.duplicates)
        roles = await door.roles()
    assert [(r.role, r.hops) for r in roles] == [("echo", 100)]
    # at most all of the end-to-end time, give or take the rounding of the events' times
    assert 0.0 < roles[0].share <= 1.0 + 1e-3
    assert roles[0].handle_ms_p50 <= roles[0].handle_ms_p99
    assert (report.sent, report.completed, report.errors, report.lost) == (100, 100, 0, 0)
    assert report.duplicated == 0
    assert report.target == "nats echo"
    assert report.verdict == "pass"
    assert 0 < report.latency_ms["p50"] <= report.latency_ms["p99"] <= report.latency_ms["max"]
    path = tmp_path / "out" / "report.json"
    write_report(path, report)
    assert read_report(path) == report


async def test_each_request_carries_the_targets_caller_scopes(mesh: Mesh) -> None:
    seen: list[tuple[str, frozenset[str]]] = []
    agent = Agent("echo")

    @agent.handler
    async def note(body: msgspec.Raw, ctx: Context) -> msgspec.Raw:
        seen.append((ctx.caller.subject, ctx.caller.scopes))
        return body

    await mesh.start_replicas(agent)
    scenario = Scenario.model_validate(
        {
            "name": "scoped",
            "agent": "echo",
            "target": {"door": "nats", "scopes": ["kb:read", "handoff:write"]},
            "payload": {"template": '{"n": {n}}'},
            "arrival": {"model": "constant", "rate": 20},
            "seconds": 0.2,
            "timeout_s": 10,
        }
    )
    async with nats_door(scenario, mesh.settings) as door:
        report = await run_scenario(scenario, door.send, duplicates=door.duplicates)
    assert report.completed == report.sent > 0
    assert set(seen) == {("load", frozenset({"kb:read", "handoff:write"}))}


def reply(parent: str, *, type_: str = "Raw", kind: str = "reply") -> Envelope:
    return Envelope(
        id=new_id(),
        kind=kind,  # type: ignore[arg-type]
        workflow="wf",
        sender="echo",
        to="cli",
        created=0.0,
        type=type_,
        parent=parent,
    )


def test_a_second_reply_to_one_task_is_a_duplicate() -> None:
    replies = _Replies()
    for envelope in (
        reply("a"),
        reply("b"),
        reply("a"),  # the duplicate
        reply("b", type_=ev.EVENT_TYPE),  # a streamed chunk, not a reply
        reply("b", kind="error"),  # an error reply
    ):
        replies.on_reply(envelope)
    assert replies.duplicated == 1
    assert replies.answered == {"a", "b"}


def test_replies_are_remembered_for_a_window_or_two_not_for_the_whole_run() -> None:
    now = 0.0
    replies = _Replies(window_s=60.0, clock=lambda: now)
    for n in range(50):  # 50 windows of 100 answered tasks each
        now = n * 60.0
        for k in range(100):
            replies.on_reply(reply(f"t{n}-{k}"))
    assert replies.duplicated == 0
    assert len(replies.answered) == 100  # the tasks of this window, not of the 5,000

    now += 59.0  # a second reply in the same window, and one from the window before
    replies.on_reply(reply("t49-0"))
    replies.on_reply(reply("t48-0"))
    assert replies.duplicated == 2
    now += 61.0  # a new window: the last one's tasks are still remembered
    replies.on_reply(reply("t49-1"))
    assert replies.duplicated == 3
    now += 60.0  # two windows on: forgotten, counted as a first reply
    replies.on_reply(reply("t48-1"))
    assert replies.duplicated == 3


def test_the_breakdown_sample_stays_bounded_and_spread_over_the_run() -> None:
    sample = _Sample(size=8)
    for n in range(100):
        sample.add(f"W{n}")
    assert len(sample.kept) < 8
    kept = [int(w[1:]) for w in sample.kept]
    assert kept == sorted(kept)
    assert kept[0] == 0
    assert kept[-1] >= 64  # the whole run, not its start
    assert all(b - a == sample.stride for a, b in itertools.pairwise(kept))


async def test_reply_listeners_see_each_verified_reply_once(mesh: Mesh) -> None:
    """The door counts replies as its client verifies them (no second subscription): a
    listener sees each signed reply once, and nothing of an unsigned one."""
    await mesh.start_replicas(echo_agent)
    client = await mesh.ingress()
    seen: list[Envelope] = []
    client.reply_listeners.append(seen.append)
    token = mesh.token()
    await client.request("echo", msgspec.Raw(b'{"n": 1}'), token=token, returns=msgspec.Raw)
    attacker = await mesh.attacker()
    await attacker.nc.publish(client.reply_subject, encode_envelope(reply("forged")))
    await attacker.nc.flush()
    await client.request("echo", msgspec.Raw(b'{"n": 2}'), token=token, returns=msgspec.Raw)
    assert [(e.kind, e.sender, e.body) for e in seen] == [
        ("reply", "echo", msgspec.Raw(b'{"n": 1}')),
        ("reply", "echo", msgspec.Raw(b'{"n": 2}')),
    ]


async def test_a_failing_reply_listener_does_not_cost_the_call_its_reply(mesh: Mesh) -> None:
    await mesh.start_replicas(echo_agent)
    client = await mesh.ingress()

    def broken(envelope: Envelope) -> None:
        raise RuntimeError("an observer's bug")

    client.reply_listeners.append(broken)
    reply_body = await client.request(
        "echo", msgspec.Raw(b'{"n": 3}'), token=mesh.token(), returns=msgspec.Raw, timeout=5.0
    )
    assert reply_body == msgspec.Raw(b'{"n": 3}')
