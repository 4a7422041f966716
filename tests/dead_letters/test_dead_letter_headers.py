"""A dead letter keeps an allow-list of the original's headers, never the sender's
``Nats-*`` instructions to the stream: every header a publisher can set, on a real task
subject and on a reply subject, still gives exactly one dead letter and one ``rejected``
event, and the replica serves on. The same refused message refused twice is stored once.

The headers are the ones nats-server (2.12 and later) reads from a published message:
``server/stream.go`` and ``server/jetstream_batching.go`` (expectations, rollup, per-message
TTL, counters, atomic batches, schedules, required API level, sourcing), message tracing,
and the ones it sets itself on stored, republished and delivered messages, which a
publisher can forge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from nats.js.errors import APIError, NotFoundError

from jetmesh import MeshSettings
from jetmesh.dead_letters import KEPT_HEADERS, MSG_ID_HEADER, UNVERIFIED_WORKFLOW
from jetmesh.identity import signing
from tests.harness.mesh import Echo, EchoAgent, Mesh, kinds

pytestmark = pytest.mark.integration

LAST_SEQ = "<the stream's last sequence>"
LAST_SUBJECT_SEQ = "<the subject's last sequence>"
LAST_MSG_ID = "<the stream's last message id>"
SUBJECT = "<the subject>"

PUBLISHER_HEADERS = {
    "Nats-Msg-Id": "not-the-envelope-id",
    "Nats-Expected-Stream": "<the tasks stream>",
    "Nats-Expected-Last-Sequence": LAST_SEQ,
    "Nats-Expected-Last-Subject-Sequence": LAST_SUBJECT_SEQ,
    "Nats-Expected-Last-Subject-Sequence-Subject": SUBJECT,
    "Nats-Expected-Last-Msg-Id": LAST_MSG_ID,
    "Nats-Rollup": "sub",
    "Nats-TTL": "60s",
    "Nats-Incr": "1",
    "Nats-Marker-Reason": "MaxAge",
    "Nats-Batch-Id": "batch-1",
    "Nats-Batch-Sequence": "1",
    "Nats-Batch-Commit": "1",
    "Nats-Schedule": "@every 1s",
    "Nats-Schedule-Target": SUBJECT,
    "Nats-Schedule-Source": SUBJECT,
    "Nats-Schedule-TTL": "5s",
    "Nats-Schedule-Time-Zone": "UTC",
    "Nats-Schedule-Rollup": "sub",
    "Nats-Scheduler": SUBJECT,
    "Nats-Schedule-Next": "purge",
    "Nats-Required-Api-Level": "99",
    "Nats-Trace-Dest": "trace.sink",
    "Nats-Stream-Source": "OTHER 1 other.subject",
    "Nats-Counter-Sources": "{}",
}
"""Headers a publisher sets to instruct the stream that stores its message."""

FORGED_SERVER_HEADERS = {
    name: "1"
    for name in (
        "Nats-Stream",
        "Nats-Subject",
        "Nats-Sequence",
        "Nats-Time-Stamp",
        "Nats-Last-Sequence",
        "Nats-Num-Pending",
        "Nats-UpTo-Sequence",
        "Nats-Msg-Size",
        "Nats-Response-Type",
        "Nats-Pending-Messages",
        "Nats-Pending-Bytes",
        "Nats-Last-Consumer",
        "Nats-Last-Stream",
        "Nats-Consumer-Stalled",
        "Nats-Request-Info",
        "Nats-Pin-Id",
        "Nats-No-Masking",
        "KV-Operation",
    )
}
"""Headers the server sets on what it stores or delivers, forged by a publisher."""

ALL_HEADERS = {**PUBLISHER_HEADERS, **FORGED_SERVER_HEADERS}

STORED_BY_A_PLAIN_STREAM = (
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Msg-Id",
)
"""Accepted on the tasks stream and refused by the dead-letter stream if copied there (err
10060 and its kin): these must reach a replica, or the test proves nothing."""


async def _value(mesh: Mesh, name: str, subject: str) -> str:
    """The header's value, made to pass the tasks stream where it can."""
    js = (await mesh.ingress()).js
    value = ALL_HEADERS[name]
    stream = mesh.settings.tasks_stream
    if name == "Nats-Expected-Stream":
        return stream
    if value == SUBJECT:
        return subject
    if value == LAST_SEQ:
        return str((await js.stream_info(stream)).state.last_seq)
    if value == LAST_SUBJECT_SEQ:
        try:
            return str((await js.get_last_msg(stream, subject)).seq)
        except NotFoundError:
            return "0"
    if value == LAST_MSG_ID:
        last = await js.get_last_msg(stream, subject)
        return (last.headers or {})["Nats-Msg-Id"]
    return value


async def _wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``check`` until it returns True."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_every_nats_header_on_a_task_gives_one_dead_letter(mesh: Mesh) -> None:
    echo = EchoAgent("echo")
    (replica,) = await mesh.start_replicas(echo.agent)
    client = await mesh.ingress()
    token = mesh.token()
    attacker = await mesh.attacker()
    subject = mesh.subjects.task("echo")
    stored, refused_by_stream = [], []
    for name in ALL_HEADERS:
        # The replica serves (and the stream has a last message for the expectations).
        got = await client.request("echo", Echo(name), token=token, returns=Echo, timeout=10)
        assert got == Echo(name.upper()), name
        sealed = mesh.seal({"text": 5}, to="echo", token=token, type_="test.Echo/1")
        headers = {**sealed.headers, name: await _value(mesh, name, subject)}
        before = len(await mesh.dead_letters("echo"))
        try:
            await attacker.publish(subject, sealed.data, headers)
        except APIError:  # the tasks stream itself refuses it: it never reaches a replica
            refused_by_stream.append(name)
            continue
        stored.append(name)
        workflow = sealed.envelope.workflow
        logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "rejected")))
        letters = await mesh.dead_letters("echo")
        assert len(letters) == before + 1, f"{name}: no dead letter"
        letter = letters[-1]
        assert letter.data == sealed.data, name
        assert not [h for h in letter.headers if h.startswith("Nats-") and h != "Nats-Msg-Id"]
        assert letter.headers["Nats-Msg-Id"].startswith("dlq-echo-"), name
        assert set(KEPT_HEADERS) - {"Mesh-Sig-Path"} <= set(letter.headers), name
        assert len(kinds(logged, "rejected")) == 1, name
        assert not kinds(logged, "dead-letter-failed"), name
    assert set(STORED_BY_A_PLAIN_STREAM) <= set(stored), refused_by_stream
    got = await client.request("echo", Echo("after"), token=token, returns=Echo, timeout=10)
    assert got == Echo("AFTER")
    assert replica.state.value == "running"
    assert not kinds(await mesh.events(UNVERIFIED_WORKFLOW), "dead-letter-failed")


async def test_every_nats_header_on_a_reply_gives_one_dead_letter(mesh: Mesh) -> None:
    """A reply travels on core NATS, so no stream refuses any header on the way: each one
    reaches the ingress, which refuses the unsigned reply and dead-letters it."""
    client = await mesh.ingress()
    attacker = await mesh.attacker()
    for n, (name, value) in enumerate(ALL_HEADERS.items()):
        data = f"an unsigned reply {n} with {name}".encode()
        if value == SUBJECT:
            value = mesh.subjects.task("echo")
        await attacker.nc.publish(client.reply_subject, data, headers={name: value})

        async def stored(n: int = n) -> bool:
            return len(await mesh.dead_letters("cli")) == n + 1

        await _wait_for(stored)
        letter = (await mesh.dead_letters("cli"))[-1]
        assert (letter.data, letter.reason) == (data, "unsigned"), name
        assert name not in letter.headers or name == "Nats-Msg-Id"
        if name == "Nats-Msg-Id":
            assert letter.headers[MSG_ID_HEADER] == value
    logged = await mesh.unverified_events()
    assert len(kinds(logged, "rejected")) == len(ALL_HEADERS)
    assert not kinds(logged, "dead-letter-failed")


async def test_the_same_refused_message_is_stored_once(mesh: Mesh) -> None:
    """Refused twice (here: the same bytes published under two message ids; in life, a
    redelivery after a crash between dead-lettering and the ack), it is audited twice
    and stored once: the dead letter's id comes from the bytes and the reason."""
    await mesh.start_replicas(EchoAgent("echo").agent)
    attacker = await mesh.attacker()
    subject = mesh.subjects.task("echo")
    data = b"the same refused bytes"
    for msg_id in ("first", "second"):
        await attacker.publish(subject, data, {"Nats-Msg-Id": msg_id})
    logged = await mesh.wait_events(
        UNVERIFIED_WORKFLOW, lambda got: len(kinds(got, "rejected")) >= 2
    )
    assert len(kinds(logged, "rejected")) == 2
    await mesh.settled("echo")
    await asyncio.sleep(0.3)  # a late second dead letter would be stored by now
    letters = await mesh.dead_letters("echo")
    assert len(letters) == 1
    assert letters[0].headers[MSG_ID_HEADER] == "first"


async def test_a_dead_letter_stream_that_refuses_is_given_up_on(mesh: Mesh) -> None:
    """The dead-letter stream is gone: the refused task is sent back with backoff,
    ``max_deliver`` times in all, then given up on with a ``dead-letter-failed`` event
    next to its ``rejected`` one; it is not delivered again, the replica serves on."""
    settings: MeshSettings = mesh.configure(max_deliver=3, retry_backoff_s=(0.1, 0.2))
    await mesh.start_replicas(EchoAgent("echo").agent)
    client = await mesh.ingress()
    await client.js.delete_stream(settings.dlq_stream)
    token = mesh.token()
    sealed = mesh.seal({"text": 5}, to="echo", token=token, type_="test.Echo/1")
    attacker = await mesh.attacker()
    ack = await attacker.publish(mesh.subjects.task("echo"), sealed.data, sealed.headers)
    workflow = sealed.envelope.workflow
    logged = await mesh.wait_events(
        workflow, lambda got: bool(kinds(got, "dead-letter-failed") and kinds(got, "rejected"))
    )
    (failed,) = kinds(logged, "dead-letter-failed")
    assert failed.event.reason == "schema-violation"
    assert "not dead-lettered" in failed.event.detail
    assert failed.verified
    for named in (failed, *kinds(logged, "rejected")):  # the message, as its sender knows it
        assert (named.event.message, named.event.seq) == (sealed.envelope.id, ack.seq)
        assert named.event.task == sealed.envelope.id
    await mesh.settled("echo")
    info = await client.js.consumer_info(settings.tasks_stream, "echo")
    assert info.delivered.stream_seq == 1
    assert info.delivered.consumer_seq == 3, "delivered max_deliver times, then given up"
    await asyncio.sleep(0.5)  # no further delivery, no further event
    again = await mesh.events(workflow)
    assert len(kinds(again, "rejected")) == 1
    assert len(kinds(again, "dead-letter-failed")) == 1
    got = await client.request("echo", Echo("on"), token=token, returns=Echo, timeout=10)
    assert got == Echo("ON")


def test_kept_headers_are_the_ones_the_verifier_reads() -> None:
    """What a dead letter keeps is what the verifier needs to check the original again."""
    assert set(KEPT_HEADERS) >= {
        signing.SCHEME_HEADER,
        signing.KEY_HEADER,
        signing.SIGNATURE_HEADER,
        signing.PATH_HEADER,
    }
