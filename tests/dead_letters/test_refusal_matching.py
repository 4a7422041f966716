"""A publisher matches a refusal to the message it sent: the ``rejected`` event names the
message's ``Nats-Msg-Id`` as sent (``message``, bounded and printable: it is the sender's
choice) and its sequence in the tasks stream (``seq``), also when the envelope could not be
read (workflow ``_unverified``, ``task`` null); and on servers that enforce a policy an
ingress reads that event by direct get, as subjects/README.md says."""

from __future__ import annotations

import asyncio
import json
import time
from email.header import Header
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from jetmesh import Agent, Context
from jetmesh.dead_letters import MAX_MESSAGE_ID, UNVERIFIED_WORKFLOW, refused_message_id
from jetmesh.envelope import Envelope, new_id
from jetmesh.events import Event
from jetmesh.identity.keys import b64d, b64e
from jetmesh.identity.signing import SIGNATURE_HEADER
from jetmesh.identity.verifier import MSG_ID_HEADER
from tests.harness.mesh import WAIT_S, Echo, EchoAgent, Mesh, rejected
from tests.harness.secured import SecuredMesh

# -- the id as an event repeats it ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        ("01JABCDEF", "01JABCDEF"),
        ("order-7 é", "order-7 é"),
        ("a\x00b\x1b[31mc\x7f", "a\\x00b\\x1b[31mc\\x7f"),
        ("zero\u200bwidth\u2028line", "zero\\u200bwidth\\u2028line"),
        ("back\\slash", "back\\\\slash"),
        ("\U000e0001tag", "\\U000e0001tag"),
    ],
    ids=["plain", "non-ascii", "control", "invisible", "backslash", "tag-character"],
)
def test_a_message_id_is_written_printable(sent: str, written: str) -> None:
    assert refused_message_id({MSG_ID_HEADER: sent}) == written
    assert refused_message_id({MSG_ID_HEADER: sent}).isprintable()


def test_a_long_message_id_is_cut_at_a_whole_escape() -> None:
    cut = refused_message_id({MSG_ID_HEADER: "x" * 10_000})
    assert cut == "x" * MAX_MESSAGE_ID
    escaped = refused_message_id({MSG_ID_HEADER: "\x01" * 10_000})
    assert len(escaped) == MAX_MESSAGE_ID - MAX_MESSAGE_ID % 4
    assert escaped == "\\x01" * (MAX_MESSAGE_ID // 4)
    mixed = refused_message_id({MSG_ID_HEADER: "ab" + "\x02" * 100})
    assert mixed.endswith("\\x02")
    assert len(mixed) <= MAX_MESSAGE_ID


def test_no_message_id_is_empty() -> None:
    assert refused_message_id(None) == ""
    assert refused_message_id({}) == ""
    assert refused_message_id({"Mesh-Key": "k1"}) == ""


def test_a_header_object_is_decoded() -> None:
    value = Header("caf\xe9\x07", "utf-8")
    assert refused_message_id({MSG_ID_HEADER: value}) == "caf\xe9\\x07"


def test_old_events_without_the_fields_still_decode() -> None:
    old = b'{"kind":"rejected","agent":"echo","at":1.0,"reason":"unsigned"}'
    event = msgspec.json.decode(old, type=Event)
    assert (event.message, event.seq) == ("", None)


# -- on real servers --------------------------------------------------------------------------


async def refusal_of(mesh: Mesh, reason: str, msg_id: str) -> Event:
    """The one ``rejected`` event of ``echo`` with ``reason`` naming ``msg_id``, read
    from ``_unverified``."""
    logged = await mesh.wait_events(
        UNVERIFIED_WORKFLOW,
        lambda got: any(e.event.message == msg_id for e in rejected(got, reason, "echo")),
    )
    found = [e for e in rejected(logged, reason, "echo") if e.event.message == msg_id]
    assert len(found) == 1, f"expected one rejected/{reason} naming {msg_id}: {logged}"
    assert found[0].verified, "the refusal is signed by the agent that refused"
    assert found[0].event.task is None, "the envelope was not read: nothing in it is trusted"
    return found[0].event


@pytest.mark.integration
@pytest.mark.parametrize("variant", ["unsigned", "bad-signature", "malformed"])
async def test_a_refused_task_names_the_id_and_sequence_it_was_sent_with(
    mesh: Mesh, echo: EchoAgent, variant: str
) -> None:
    await mesh.start_replicas(echo.agent)
    client = await mesh.ingress()
    sealed = mesh.seal(Echo("forged"), token=mesh.token())
    msg_id = f"publisher-{variant}-{new_id()}"
    if variant == "unsigned":
        data, headers = sealed.data, {}
    elif variant == "bad-signature":
        data, headers = sealed.data, dict(sealed.headers)
        signature = bytearray(b64d(headers[SIGNATURE_HEADER]))
        signature[3] ^= 0x10
        headers[SIGNATURE_HEADER] = b64e(bytes(signature))
    else:
        data = b'{"id":"01J","kind":"task","workflow":'
        headers = client.signer.headers(data)
    headers[MSG_ID_HEADER] = msg_id
    attacker = await mesh.attacker()
    ack = await attacker.publish(mesh.subjects.task("echo"), data, headers)

    event = await refusal_of(mesh, variant, msg_id)
    assert event.seq == ack.seq, "the sequence the publisher's ack named"
    assert event.kind == "rejected"


@pytest.mark.integration
async def test_a_hostile_message_id_is_cut_and_escaped_and_the_consumer_goes_on(
    mesh: Mesh, echo: EchoAgent
) -> None:
    await mesh.start_replicas(echo.agent)
    client = await mesh.ingress()
    sealed = mesh.seal(Echo("hostile"), token=mesh.token())
    hostile = "\x01\x1b[2J\u202e" + "\x07" * 2_000 + "A" * 8_000  # 10 KB
    attacker = await mesh.attacker()
    ack = await attacker.publish(mesh.subjects.task("echo"), sealed.data, {MSG_ID_HEADER: hostile})
    expected = refused_message_id({MSG_ID_HEADER: hostile})
    assert expected.startswith("\\x01\\x1b[2J\\u202e\\x07")
    assert len(expected) <= MAX_MESSAGE_ID

    event = await refusal_of(mesh, "oversized", expected)  # headers over 8 KiB
    assert event.seq == ack.seq
    assert event.message.isprintable()

    after = await client.request("echo", Echo("after"), token=mesh.token(), returns=Echo)
    assert after == Echo("AFTER")


# -- on servers that enforce a policy: a compromised ingress -------------------------------


def planner() -> Agent:
    agent = Agent("planner")

    @agent.handler
    async def plan(msg: Echo, ctx: Context) -> Echo:
        raise AssertionError("a refused task reached the handler")

    return agent


async def connect_as(secured: SecuredMesh, role: str) -> NATS:
    """A bare connection with one role's nkey seed and inbox prefix, nothing else: what a
    publisher in another language holds."""
    seed_file = Path(secured.settings.resolved_keys_dir, "nats", f"{role}.nk")
    seed = (await asyncio.to_thread(seed_file.read_text)).strip()
    return await nats.connect(
        secured.settings.nats_url, nkeys_seed_str=seed, inbox_prefix=f"_INBOX.{role}"
    )


async def direct_get(
    nc: NATS, stream: str, request: dict[str, object]
) -> tuple[dict[str, str], bytes]:
    reply = await nc.request(
        f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), timeout=5
    )
    return dict(reply.headers or {}), reply.data


@pytest.mark.integration
async def test_an_ingress_reads_the_refusal_of_its_message_by_direct_get(
    secured: SecuredMesh,
) -> None:
    await secured.start_replicas(planner())
    settings = secured.settings
    nc = await connect_as(secured, "cli")
    try:
        js = nc.jetstream()
        msg_id = f"outside-{new_id()}"
        ack = await js.publish(
            f"{settings.subject_prefix}.agent.planner.task",
            b'{"not":"signed"}',
            headers={MSG_ID_HEADER: msg_id},
        )
        subject = f"{settings.subject_prefix}.event.{UNVERIFIED_WORKFLOW}.rejected"
        event: Event | None = None
        seq = 0
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:  # each answer is one stored event
            headers, data = await direct_get(
                nc, settings.events_stream, {"seq": seq + 1, "next_by_subj": subject}
            )
            if headers.get("Status") == "404":  # none after seq yet
                await asyncio.sleep(0.05)
                continue
            seq = int(headers["Nats-Sequence"])
            envelope = msgspec.json.decode(data, type=Envelope)
            got = msgspec.json.decode(envelope.body, type=Event)
            if got.message == msg_id:
                event = got
                break
        assert event is not None, "the refusal was not found by direct get"
        assert (event.kind, event.reason, event.agent) == ("rejected", "unsigned", "planner")
        assert event.seq == ack.seq
        assert event.task is None

        # the ingress may not read the dead letter itself, nor ask the account's info
        for forbidden in (f"$JS.API.DIRECT.GET.{settings.dlq_stream}", "$JS.API.INFO"):
            with pytest.raises(nats.errors.TimeoutError):
                await nc.request(forbidden, b"{}", timeout=1)
    finally:
        await nc.close()
