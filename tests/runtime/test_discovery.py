"""Live discovery: a replica answers the NATS service API ($SRV.PING / INFO / STATS) with
its role, version, instance, handlers and counts from start to drain, and the answers
it asks for are read as data (junk is skipped)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from jetmesh import Agent, CallFailed, Context, Reject
from jetmesh.policy.derive import discovery_listens
from jetmesh.runtime import lag
from jetmesh.runtime.discovery import (
    INFO_TYPE,
    PING_TYPE,
    STATS_TYPE,
    VERBS,
    VERSION,
    control_subjects,
    survey,
)
from tests.harness.mesh import Echo, Mesh, until
from tests.harness.secured import SecuredMesh
from tests.security.compromised import CompromisedRole

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
        data = item.stats["endpoints"][0]["data"]
        assert {k: data[k] for k in ("in_flight", "handled", "errors")} == {
            "in_flight": 0,
            "handled": 0,
            "errors": 0,
        }
        assert data["lag"] in (0, None)  # None until its first read of the consumer


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
    await until(lambda: first.handled + second.handled >= 3, "the three tasks acked")
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
    # the refused task's delivery ends once its failed event is stored, after the answer
    await until(lambda: not replica._inflight, "the refused task's delivery ended")
    stats_subject = control_subjects("STATS", role, replica.instance)[-1]
    stats = json.loads((await client.nc.request(stats_subject, b"", timeout=5)).data)
    [endpoint] = stats["endpoints"]
    data = endpoint["data"]
    assert {k: data[k] for k in ("in_flight", "handled", "errors")} == {
        "in_flight": 0,
        "handled": 1,
        "errors": 1,
    }
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


async def stats_of(client_nc: Any, role: str, instance: str) -> dict[str, Any]:
    subject = control_subjects("STATS", role, instance)[-1]
    answer: dict[str, Any] = json.loads((await client_nc.request(subject, b"", timeout=5)).data)
    return answer


async def data_until(
    client_nc: Any, role: str, instance: str, wanted: dict[str, Any]
) -> dict[str, Any]:
    """The STATS ``data`` of ``instance`` once it holds ``wanted`` (the lag is read every
    :data:`lag.LAG_INTERVAL_S`), or the last one read after 200 asks."""
    data: dict[str, Any] = {}
    for _ in range(200):
        data = (await stats_of(client_nc, role, instance))["endpoints"][0]["data"]
        if all(data.get(k) == v for k, v in wanted.items()):
            return data
        await asyncio.sleep(0.05)
    return data


def gauge_reading(role: str) -> float | None:
    """``jetmesh.consumer.lag`` for ``role`` as an SDK meter provider collects it from
    the gauge's callback (a provider of the test's own: the global one is the process's)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("jetmesh").create_observable_gauge(lag.GAUGE_NAME, callbacks=[lag.observe])
    collected = reader.get_metrics_data()
    provider.shutdown()
    if collected is None:  # nothing observed at all
        return None
    for resource in collected.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert metric.name == lag.GAUGE_NAME
                for point in metric.data.data_points:
                    if point.attributes == {"jetmesh.role": role}:
                        return float(point.value)
    return None


async def test_stats_report_the_consumer_lag_and_the_gauge_observes_it(mesh: Mesh) -> None:
    """Three tasks for a replica that takes one at a time and holds it: one delivered
    and not acknowledged, two stored and not delivered; once released, no lag."""
    role = unique("lag")
    agent = Agent(role, concurrency=1)
    release = asyncio.Event()

    @agent.handler
    async def shout(msg: Echo, ctx: Context) -> Echo:
        await release.wait()
        return Echo(text=msg.text.upper())

    (replica,) = await mesh.start_replicas(agent)
    client = await mesh.ingress()
    token = mesh.token()
    calls = [
        asyncio.create_task(client.request(role, Echo(text=f"t{i}"), token=token, returns=Echo))
        for i in range(3)
    ]
    held = await data_until(client.nc, role, replica.instance, {"lag": 2, "ack_pending": 1})
    assert (held["lag"], held["ack_pending"], held["in_flight"]) == (2, 1, 1)
    assert gauge_reading(role) == 2  # what jetmesh.consumer.lag reports
    release.set()
    assert [r.text for r in await asyncio.gather(*calls)] == ["T0", "T1", "T2"]
    done = await data_until(client.nc, role, replica.instance, {"lag": 0, "ack_pending": 0})
    assert (done["lag"], done["ack_pending"], done["handled"]) == (0, 0, 3)
    [seen] = [s for s in await survey(client.nc) if s.name == role]
    counts = seen.replica_counts()
    assert counts is not None
    assert (counts.lag, counts.ack_pending) == (0, 0)
    await replica.drain()
    assert gauge_reading(role) is None  # a drained replica's consumer is no longer reported


async def test_a_failed_lag_read_leaves_the_lag_unknown(mesh: Mesh) -> None:
    """No such consumer (or a read refused): the reading stays None, STATS says None."""
    client = await mesh.ingress()
    watch = lag.LagWatch(client.nc.jetstream(), mesh.settings.tasks_stream, unique("none"))
    assert await watch.read() is None
    assert watch.last is None
    with pytest.raises(ValueError, match="positive"):
        lag.LagWatch(client.nc.jetstream(), "S", "c", interval_s=0)


async def test_a_role_reads_its_own_consumers_lag_and_no_other_roles(
    secured: SecuredMesh, tmp_path: Path
) -> None:
    """As a compromised ``counter`` on servers that enforce the policy: its own consumer's
    info is readable (the lag its replicas report), ``planner``'s is refused."""
    attacker = CompromisedRole.steal(
        "counter", secured.keys.directory, tmp_path / "stolen", secured.settings
    )
    await attacker.start()
    try:
        errors: list[Exception] = []
        attacker.mesh.error_listeners.append(errors.append)
        stream = secured.settings.tasks_stream
        own = lag.LagWatch(attacker.mesh.nc.jetstream(), stream, "counter")
        assert await own.read() == lag.Lag(pending=0, ack_pending=0)
        other = lag.LagWatch(attacker.mesh.nc.jetstream(), stream, "planner")
        assert await other.read() is None
        refused = f"$JS.API.CONSUMER.INFO.{stream}.planner".lower()
        for _ in range(100):
            if any(
                "permissions violation" in (t := str(e).lower()) and refused in t for e in errors
            ):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"no permissions violation for {refused}: {errors}")
    finally:
        await attacker.aclose()
