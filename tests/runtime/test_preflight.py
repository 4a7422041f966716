"""ctx.call's pre-flight (runtime/preflight.py): a call to a role no replica serves, or with
a body that fails the callee's published input schema, is refused before anything is
published, with a typed error and a ``call-refused`` event; with ``call_preflight = "off"``
it is published as before; a served role with a valid body is asked once, then answered
from the cache until its answer is ``call_preflight_ttl_s`` old."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.msg import Msg

from jetmesh import (
    Agent,
    BodyRejected,
    CallFailed,
    CallNotSent,
    Context,
    MeshSettings,
    MeshTimeout,
    NoReplicas,
)
from jetmesh.runtime.preflight import MISS_TTL_S, Preflight, info_subject, own_schema
from tests.harness.mesh import Echo, EchoAgent, Mesh, kinds

pytestmark = pytest.mark.integration


class Mistyped(msgspec.Struct, frozen=True):
    """An Echo on the wire (same type name) whose ``text`` is a number."""

    __mesh_type__ = "test.Echo/1"

    text: int


class Ask(msgspec.Struct, frozen=True):
    """What the front agent is asked: call ``to`` with an Echo (or a Mistyped one)."""

    __mesh_type__ = "test.Ask/1"

    to: str
    text: str = "hi"
    mistyped: bool = False
    timeout: float = 10.0
    catch: bool = True
    """Return the refusal as text (True) or let it escape the handler (False)."""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def front(name: str) -> Agent:
    agent = Agent(name)

    @agent.handler
    async def ask(msg: Ask, ctx: Context) -> Echo:
        body: Echo | Mistyped = Mistyped(text=5) if msg.mistyped else Echo(text=msg.text)
        try:
            return await ctx.call(msg.to, body, returns=Echo, timeout=msg.timeout)
        except CallNotSent as exc:
            if not msg.catch:
                raise
            return Echo(text=f"{type(exc).__name__}|{exc.reason}|{exc.detail}")
        except MeshTimeout:
            return Echo(text="timeout")

    return agent


class Published:
    """What is published on a subject (core NATS sees every publish)."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []

    async def take(self, msg: Msg) -> None:
        self.messages.append(msg)


async def watch(mesh: Mesh, subject: str) -> Published:
    published = Published()
    attacker = await mesh.attacker()
    await attacker.nc.subscribe(subject, cb=published.take)
    await attacker.nc.flush()
    return published


@pytest.fixture
async def own_mesh(fresh_settings: MeshSettings) -> AsyncIterator[Mesh]:
    """A mesh on servers of this test's own: "nobody listens" is the servers' answer, and
    no other test's subscription to the service API may answer for a role here."""
    built = Mesh(fresh_settings)
    try:
        yield built
    finally:
        await built.aclose()


async def test_a_call_to_a_role_no_replica_serves_raises_no_replicas_and_publishes_nothing(
    own_mesh: Mesh,
) -> None:
    own_mesh.configure(call_preflight="served")
    caller, nobody = unique("front"), unique("nobody")
    await own_mesh.start_replicas(front(caller))
    published = await watch(own_mesh, own_mesh.subjects.task(nobody))
    client = await own_mesh.ingress()
    workflow = unique("wf")
    answer = await client.request(
        caller,
        Ask(to=nobody, timeout=20.0),
        token=own_mesh.token(),
        returns=Echo,
        workflow=workflow,
        timeout=15.0,
    )
    name, reason, detail = answer.text.split("|")
    assert (name, reason) == ("NoReplicas", "no-replicas")
    assert nobody in detail
    assert published.messages == [], "nothing was published to the callee's task subject"
    logged = await own_mesh.wait_events(workflow, lambda e: bool(kinds(e, "call-refused")))
    (refused,) = kinds(logged, "call-refused")
    assert refused.verified
    assert refused.signer == caller
    assert (refused.event.target, refused.event.reason) == (nobody, "no-replicas")
    assert not kinds(logged, "call"), "no call event: nothing was sent"


async def test_with_the_default_schema_check_a_task_to_an_unserved_role_is_queued(
    own_mesh: Mesh,
) -> None:
    """Durability first: "schema" (the default) leaves a role nobody serves to JetStream."""
    assert own_mesh.settings.call_preflight == "schema"
    caller, later = unique("front"), unique("later")
    await own_mesh.start_replicas(front(caller))
    published = await watch(own_mesh, own_mesh.subjects.task(later))
    client = await own_mesh.ingress()
    answer = await client.request(
        caller, Ask(to=later, timeout=1.0), token=own_mesh.token(), returns=Echo, timeout=15.0
    )
    assert answer.text == "timeout"
    assert len(published.messages) == 1, "the task was published, for a replica to come"


async def test_with_preflight_off_the_call_is_published(own_mesh: Mesh) -> None:
    own_mesh.configure(call_preflight="off")
    caller, nobody = unique("front"), unique("nobody")
    await own_mesh.start_replicas(front(caller))
    published = await watch(own_mesh, own_mesh.subjects.task(nobody))
    asked = await watch(own_mesh, "$SRV.>")
    client = await own_mesh.ingress()
    answer = await client.request(
        caller, Ask(to=nobody, timeout=1.0), token=own_mesh.token(), returns=Echo, timeout=15.0
    )
    assert answer.text == "timeout"
    assert len(published.messages) == 1
    assert asked.messages == [], "off: nothing asked"


async def test_a_body_that_fails_the_callees_schema_is_rejected_naming_the_field(
    mesh: Mesh,
) -> None:
    caller, callee = unique("front"), unique("echo")
    target = EchoAgent(callee)
    await mesh.start_replicas(front(caller))
    await mesh.start_replicas(target.agent)
    published = await watch(mesh, mesh.subjects.task(callee))
    client = await mesh.ingress()
    workflow = unique("wf")
    answer = await client.request(
        caller,
        Ask(to=callee, mistyped=True),
        token=mesh.token(),
        returns=Echo,
        workflow=workflow,
        timeout=15.0,
    )
    name, reason, detail = answer.text.split("|")
    assert (name, reason) == ("BodyRejected", "body-rejected")
    assert "text: 5 is not of type 'string'" in detail
    assert "test.Echo/1" in detail
    assert published.messages == []
    assert target.seen == []
    logged = await mesh.wait_events(workflow, lambda e: bool(kinds(e, "call-refused")))
    (refused,) = kinds(logged, "call-refused")
    assert (refused.event.target, refused.event.reason) == (callee, "body-rejected")


async def test_a_rejected_body_that_escapes_the_handler_fails_the_task_without_retry(
    mesh: Mesh,
) -> None:
    caller, callee = unique("front"), unique("echo")
    await mesh.start_replicas(front(caller))
    await mesh.start_replicas(EchoAgent(callee).agent)
    client = await mesh.ingress()
    workflow = unique("wf")
    with pytest.raises(CallFailed) as failure:
        await client.request(
            caller,
            Ask(to=callee, mistyped=True, catch=False),
            token=mesh.token(),
            returns=Echo,
            workflow=workflow,
            timeout=15.0,
        )
    assert failure.value.reason == "body-rejected"
    assert failure.value.error_type == "BodyRejected"
    logged = await mesh.wait_events(workflow, lambda e: bool(kinds(e, "failed")))
    assert not kinds(logged, "retried"), "the same body would be rejected again"


async def test_a_served_role_with_a_valid_body_is_asked_once(mesh: Mesh) -> None:
    caller, callee = unique("front"), unique("echo")
    target = EchoAgent(callee)
    await mesh.start_replicas(front(caller))
    await mesh.start_replicas(target.agent, count=2)
    asked = await watch(mesh, f"$SRV.*.{callee}")
    client = await mesh.ingress()
    for text in ("one", "two", "three"):
        answer = await client.request(
            caller, Ask(to=callee, text=text), token=mesh.token(), returns=Echo, timeout=15.0
        )
        assert answer.text == text.upper()
    assert sorted(target.seen) == ["one", "three", "two"]
    assert [m.subject for m in asked.messages] == [info_subject(callee)]


async def test_the_cache_is_asked_again_after_its_ttl_and_a_miss_after_two_seconds(
    own_mesh: Mesh,
) -> None:
    callee, nobody = unique("echo"), unique("nobody")
    await own_mesh.start_replicas(EchoAgent(callee).agent)
    client = await own_mesh.ingress()
    now = [1000.0]
    preflight = Preflight(client.nc, mode="served", ttl_s=30.0, clock=lambda: now[0])
    assert await preflight.check(callee, Echo(text="x"), "test.Echo/1") is None
    assert preflight.asked == 1
    now[0] += 29.0
    assert await preflight.check(callee, Echo(text="y"), "test.Echo/1") is None
    assert preflight.asked == 1, "fresh: answered from the cache"
    now[0] += 2.0
    assert await preflight.check(callee, Echo(text="z"), "test.Echo/1") is None
    await preflight.settled()
    assert preflight.asked == 2, "stale: asked again, in the background"
    assert preflight._callees[callee].asked == now[0]

    refused = await preflight.check(nobody, Echo(text="x"), "test.Echo/1")
    assert isinstance(refused, NoReplicas)
    assert refused.agent == nobody
    assert preflight.asked == 3
    assert isinstance(await preflight.check(nobody, Echo(text="x"), "test.Echo/1"), NoReplicas)
    assert preflight.asked == 3, "a miss is kept too"
    now[0] += MISS_TTL_S
    await preflight.check(nobody, Echo(text="x"), "test.Echo/1")
    assert preflight.asked == 4, "and asked again after MISS_TTL_S"


async def test_a_role_seen_lately_is_not_refused_while_its_replicas_restart(
    own_mesh: Mesh,
) -> None:
    """No replica now, but one answered within the TTL: the call goes on (queued by
    JetStream for the replicas coming back); past the TTL it is refused."""
    callee = unique("echo")
    (replica,) = await own_mesh.start_replicas(EchoAgent(callee).agent)
    client = await own_mesh.ingress()
    now = [1000.0]
    preflight = Preflight(client.nc, mode="served", ttl_s=30.0, clock=lambda: now[0])
    assert await preflight.check(callee, Echo(text="x"), "test.Echo/1") is None
    await replica.drain(timeout=5.0)
    own_mesh.replicas.remove(replica)
    now[0] += 29.0
    assert await preflight.check(callee, Echo(text="x"), "test.Echo/1") is None
    assert preflight.asked == 1
    now[0] += 2.0
    assert await preflight.check(callee, Echo(text="x"), "test.Echo/1") is None, (
        "the stale answer while the role is asked again"
    )
    await preflight.settled()
    assert preflight.asked == 2
    refused = await preflight.check(callee, Echo(text="x"), "test.Echo/1")
    assert isinstance(refused, NoReplicas)


async def test_types_the_callee_does_not_publish_are_left_to_it(mesh: Mesh) -> None:
    callee = unique("echo")
    await mesh.start_replicas(EchoAgent(callee).agent)
    client = await mesh.ingress()
    preflight = Preflight(client.nc, mode="schema")
    assert await preflight.check(callee, Ask(to="x"), "test.Ask/1") is None
    refused = await preflight.check(callee, Mistyped(text=1), "test.Echo/1")
    assert isinstance(refused, BodyRejected)
    assert refused.errors == ["text: 1 is not of type 'string'"]
    assert refused.type == "test.Echo/1"


async def test_a_body_of_the_type_the_callee_publishes_is_not_validated_again(
    mesh: Mesh,
) -> None:
    """The same schema as the callee's, the same type: a valid body by construction."""
    callee = unique("echo")
    await mesh.start_replicas(EchoAgent(callee).agent)
    client = await mesh.ingress()
    answer = await client.nc.request(info_subject(callee), b"", timeout=5.0)
    (endpoint,) = json.loads(answer.data)["endpoints"]
    assert own_schema(Echo) == endpoint["metadata"]["input_schema"]
    preflight = Preflight(client.nc, mode="schema")
    assert await preflight.check(callee, Echo(text="x"), "test.Echo/1") is None
    assert preflight._callees[callee].validators == {}, "no validator built: not validated"
    assert await preflight.check(callee, {"text": "x"}, "test.Echo/1") is None
    assert list(preflight._callees[callee].validators) == ["test.Echo/1"]
    refused = await preflight.check(callee, {"text": ["x"]}, "test.Echo/1")
    assert isinstance(refused, BodyRejected)
    assert refused.errors == ["text: ['x'] is not of type 'string'"]


async def test_an_answer_that_does_not_come_in_time_decides_nothing(own_mesh: Mesh) -> None:
    """Someone listens but does not answer (a frozen or overloaded replica): a role seen
    served stays served, one never seen is not refused; the calls go on."""
    callee, silent = unique("echo"), unique("silent")
    (replica,) = await own_mesh.start_replicas(EchoAgent(callee).agent)
    client = await own_mesh.ingress()
    now = [1000.0]
    preflight = Preflight(client.nc, mode="served", timeout_s=1.0, ttl_s=30.0, clock=lambda: now[0])
    assert await preflight.check(callee, Echo(text="x"), "test.Echo/1") is None
    await replica.drain(timeout=5.0)
    own_mesh.replicas.remove(replica)
    listener = await own_mesh.attacker()
    for role in (callee, silent):
        await listener.nc.subscribe(info_subject(role))  # never answers
    await listener.nc.flush()

    now[0] += 31.0
    assert await preflight.check(callee, Echo(text="x"), "test.Echo/1") is None
    await preflight.settled()
    assert preflight.asked == 2
    kept = preflight._callees[callee]
    assert kept.served is True
    assert "test.Echo/1" in kept.schemas, "its schemas kept"
    assert isinstance(await preflight.check(callee, Mistyped(text=1), "test.Echo/1"), BodyRejected)

    assert await preflight.check(silent, Echo(text="x"), "test.Echo/1") is None
    assert preflight._callees[silent].served is None
    assert preflight.asked == 3
    now[0] += MISS_TTL_S
    assert await preflight.check(silent, Echo(text="x"), "test.Echo/1") is None
    assert silent in preflight._asking, "the call did not wait for the silent role again"
    await preflight.settled()
    assert preflight.asked == 4
