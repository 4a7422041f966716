"""Live discovery: a replica answers the NATS service API ($SRV.PING / INFO / STATS) with
its role, version, instance, handlers and counts from start to drain, and the answers
it asks for are read as data (junk is skipped)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats

from jetmesh import Agent, CallFailed, Context, Reject
from jetmesh.policy.derive import discovery_listens
from jetmesh.runtime.discovery import (
    INFO_TYPE,
    PING_TYPE,
    STATS_TYPE,
    VERBS,
    VERSION,
    control_subjects,
    survey,
)
from tests.harness.mesh import Echo, Mesh

pytestmark = pytest.mark.integration


class Tally(msgspec.Struct, frozen=True):
    """A second input type, so the agent has two handlers."""

    __mesh_type__ = "test.Tally/1"

    count: int


def two_handed(name: str) -> Agent:
    agent = Agent(name, description="echoes and tallies")

    @agent.handler
    async def shout(msg: Echo, ctx: Context) -> Echo:
        return Echo(text=msg.text.upper())

    @agent.handler
    async def tally(msg: Tally) -> Tally:
        return Tally(count=msg.count + 1)

    return agent


def one_handed(name: str) -> Agent:
    agent = Agent(name)

    @agent.handler
    async def shout(msg: Echo, ctx: Context) -> Echo:
        return Echo(text=msg.text.upper())

    return agent


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_replicas_answer_ping_info_and_stats_with_their_role_and_handlers(
    mesh: Mesh,
) -> None:
    role = unique("disc")
    replicas = await mesh.start_replicas(two_handed(role), count=2)
    client = await mesh.ingress()
    seen = [s for s in await survey(client.nc) if s.name == role]
    assert sorted(s.id for s in seen) == sorted(r.instance for r in replicas)
    for item in seen:
        assert item.version == VERSION
        assert item.metadata["instance"] == item.id
        assert item.metadata["host"] == socket.gethostname()
        assert item.metadata["pid"] == str(os.getpid())
        assert item.info["type"] == INFO_TYPE
        assert item.info["description"] == "echoes and tallies"
        endpoints = {e["name"]: e for e in item.info["endpoints"]}
        assert sorted(endpoints) == ["shout", "tally"]
        tally = endpoints["tally"]
        assert tally["subject"] == mesh.subjects.task(role)
        assert tally["queue_group"] == role
        assert tally["metadata"]["input_type"] == "test.Tally/1"
        assert tally["metadata"]["output_type"] == "test.Tally/1"
        schema = json.loads(tally["metadata"]["input_schema"])
        assert schema["$defs"]["Tally"]["properties"]["count"] == {"type": "integer"}
        assert item.stats["type"] == STATS_TYPE
        # two handlers, counted together: the figures are in every endpoint's data
        assert [e["num_requests"] for e in item.stats["endpoints"]] == [0, 0]
        assert item.stats["endpoints"][0]["data"] == {
            "in_flight": 0,
            "handled": 0,
            "errors": 0,
        }


async def test_one_instance_answers_on_its_own_subject_and_stats_count_its_tasks(
    mesh: Mesh,
) -> None:
    role = unique("disc")
    first, second = await mesh.start_replicas(one_handed(role), count=2)
    client = await mesh.ingress()
    token = mesh.token()
    for i in range(3):
        reply = await client.request(role, Echo(text=f"hi {i}"), token=token, returns=Echo)
        assert reply.text == f"HI {i}"
    for replica in (first, second):
        ping = control_subjects("PING", role, replica.instance)[-1]
        answer = json.loads((await client.nc.request(ping, b"", timeout=5)).data)
        assert answer == {
            "type": PING_TYPE,
            "name": role,
            "id": replica.instance,
            "version": VERSION,
            "metadata": answer["metadata"],
        }
        stats_subject = control_subjects("STATS", role, replica.instance)[-1]
        stats = json.loads((await client.nc.request(stats_subject, b"", timeout=5)).data)
        [endpoint] = stats["endpoints"]
        assert endpoint["num_requests"] == replica.handled  # one handler: its figures
        assert endpoint["data"]["handled"] == replica.handled
    assert first.handled + second.handled == 3


async def test_stats_count_the_deliveries_that_failed(mesh: Mesh) -> None:
    """``errors``: deliveries refused, raised or given up on (here a handler's Reject)."""
    role = unique("disc")
    agent = Agent(role)

    @agent.handler
    async def shout(msg: Echo, ctx: Context) -> Echo:
        if msg.text == "no":
            raise Reject("told no")
        return Echo(text=msg.text.upper())

    (replica,) = await mesh.start_replicas(agent)
    client = await mesh.ingress()
    token = mesh.token()
    assert (await client.request(role, Echo(text="yes"), token=token, returns=Echo)).text == "YES"
    with pytest.raises(CallFailed):
        await client.request(role, Echo(text="no"), token=token, returns=Echo)
    stats_subject = control_subjects("STATS", role, replica.instance)[-1]
    stats = json.loads((await client.nc.request(stats_subject, b"", timeout=5)).data)
    [endpoint] = stats["endpoints"]
    assert endpoint["data"] == {"in_flight": 0, "handled": 1, "errors": 1}
    assert endpoint["num_errors"] == 1


async def test_a_drained_replica_no_longer_answers(mesh: Mesh) -> None:
    role = unique("disc")
    first, second = await mesh.start_replicas(one_handed(role), count=2)
    client = await mesh.ingress()
    await first.drain()
    await first.drain()  # idempotent
    seen = [s.id for s in await survey(client.nc) if s.name == role]
    assert seen == [second.instance]
    await second.drain()
    assert [s for s in await survey(client.nc) if s.name == role] == []


async def test_junk_answers_are_skipped(mesh: Mesh) -> None:
    """Whoever answers the service API is not trusted to answer well."""
    attacker = await mesh.attacker()
    answers: list[Any] = [b"not json", b"[1, 2]", b'{"name": "", "id": "x"}', b'{"id": "y"}']
    forged = {"type": PING_TYPE, "name": "forged", "id": "f1", "version": "9.9.9"}

    async def answer(msg: Msg) -> None:
        for junk in answers:
            await attacker.nc.publish(msg.reply, junk)
        await attacker.nc.publish(msg.reply, json.dumps({**forged, "metadata": [1]}).encode())

    for verb in VERBS:
        await attacker.nc.subscribe(f"$SRV.{verb}", cb=answer)
    await attacker.nc.flush()
    client = await mesh.ingress()
    seen = [s for s in await survey(client.nc) if s.name in ("forged", "")]
    assert [(s.name, s.id, s.version, s.metadata) for s in seen] == [("forged", "f1", "9.9.9", {})]
    assert seen[0].replica_counts() is None


def matches(subject: str, pattern: str) -> bool:
    """NATS subject matching (``*`` one token, ``>`` the rest)."""
    tokens, wanted = subject.split("."), pattern.split(".")
    for i, want in enumerate(wanted):
        if want == ">":
            return len(tokens) > i
        if i >= len(tokens) or (want != "*" and want != tokens[i]):
            return False
    return len(tokens) == len(wanted)


def test_the_role_may_subscribe_to_every_subject_its_replicas_listen_on() -> None:
    """The permissions derived for a role cover its replicas' control subjects, and no
    other role's."""
    allowed = discovery_listens("counter")
    for verb in VERBS:
        for subject in control_subjects(verb, "counter", "abc123"):
            assert any(matches(subject, p) for p in allowed), subject
        for subject in control_subjects(verb, "planner", "abc123")[1:]:
            assert not any(matches(subject, p) for p in allowed), subject


async def test_the_answers_read_as_nats_micro_reads_them(mesh: Mesh) -> None:
    """The service API's own client types (nats-py's ``nats.micro``) parse every answer:
    what ``nats micro info`` and other NATS tooling read."""
    role = unique("disc")
    [replica] = await mesh.start_replicas(one_handed(role))
    client = await mesh.ingress()

    async def ask(verb: str) -> dict[str, Any]:
        subject = control_subjects(verb, role, replica.instance)[-1]
        answer: dict[str, Any] = json.loads((await client.nc.request(subject, b"", timeout=5)).data)
        return answer

    ping = ServicePing.from_dict(await ask("PING"))
    assert (ping.name, ping.id, ping.version) == (role, replica.instance, VERSION)
    info = ServiceInfo.from_dict(await ask("INFO"))
    assert [(e.name, e.subject, e.queue_group) for e in info.endpoints] == [
        ("shout", mesh.subjects.task(role), role)
    ]
    stats = ServiceStats.from_dict(await ask("STATS"))
    assert stats.id == replica.instance
    assert [e.num_requests for e in stats.endpoints] == [0]
