"""Bad input on an agent's task subject: every message is refused before its handler runs,
dead-lettered with a stable reason, audited, and the consumer goes on.

An attacker publishes straight into JetStream with a bare nats-py connection. Messages are
built with the library's own pieces (``MeshClient.envelope``/``seal``, ``Signer``,
``issue_certificate``, ``mint_token``) and then tampered with. For each case the test checks:

(a) the handler did not run for it;
(b) one dead letter on ``<prefix>.dlq.echo`` carries the specific ``Mesh-Dlq-Reason``;
(c) one ``rejected`` event with that reason is in the audit log: in the envelope's workflow
    when the envelope could be read after its signature checked out, else in ``_unverified``;
(d) a valid task sent right after is handled and answered.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from jetmesh import Envelope, ErrorBody, MeshClient
from jetmesh.dead_letters import UNVERIFIED_WORKFLOW
from jetmesh.envelope import decode_body
from jetmesh.event_log import LoggedEvent
from jetmesh.identity.certificates import default_permissions, issue_certificate
from jetmesh.identity.keys import KeyPair, b64d, b64e
from jetmesh.identity.signing import SCHEME_HEADER, SIGNATURE_HEADER
from jetmesh.identity.tokens import mint_token
from jetmesh.identity.verifier import MSG_ID_HEADER
from tests.harness.mesh import (
    WAIT_S,
    Echo,
    EchoAgent,
    Mesh,
    Sealed,
    rejected,
    signed_by,
)

pytestmark = pytest.mark.integration


async def attack(mesh: Mesh, echo: EchoAgent) -> tuple[str, str]:
    """Start one echo replica and the ingress; returns the task subject and a valid token."""
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    return mesh.subjects.task("echo"), mesh.token()


async def assert_refused(
    mesh: Mesh,
    echo: EchoAgent,
    reason: str,
    *,
    data: bytes,
    envelope: Envelope | None = None,
    handled_before: tuple[str, ...] = (),
) -> None:
    """Check (b), (c), (d) and then (a) for one refused message; ``envelope`` is the one
    the receiver could read (its workflow holds the audit event), None when it could not."""
    workflow = envelope.workflow if envelope is not None else UNVERIFIED_WORKFLOW
    dead = await mesh.wait_dead_letters("echo", reason)
    assert len(dead) == 1, f"expected one {reason!r} dead letter, got {dead}"
    assert dead[0].subject == mesh.subjects.dlq("echo")
    assert dead[0].original_subject == mesh.subjects.task("echo")
    assert dead[0].data == data, "a dead letter keeps the exact bytes it refused"

    logged = await mesh.wait_events(workflow, lambda got: bool(rejected(got, reason, "echo")))
    audit = rejected(logged, reason, "echo")
    assert len(audit) == 1, f"expected one rejected/{reason} event in {workflow}: {logged}"
    assert audit[0].verified, "the audit event itself is signed by the refusing agent"
    assert audit[0].workflow == workflow
    assert audit[0].event.task == (envelope.id if envelope is not None else None)
    assert audit[0].event.detail.startswith(mesh.subjects.task("echo") + ": ")

    client = await mesh.ingress()
    after = await client.request(
        "echo", Echo("after"), token=mesh.token(), returns=Echo, timeout=WAIT_S
    )
    assert after == Echo("AFTER")
    assert echo.seen == [*handled_before, "after"], "the handler ran for a refused message"


async def assert_error_reply(
    reply: asyncio.Future[Envelope], reason: str, timeout: float = WAIT_S
) -> None:
    """The caller named in a readable refused task is told why (kind ``error``)."""
    envelope = await asyncio.wait_for(reply, timeout)
    assert envelope.kind == "error"
    assert decode_body(envelope, ErrorBody).reason == reason


# -- signatures and keys ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["no-signature-headers", "unknown-scheme"])
async def test_unsigned_message(mesh: Mesh, echo: EchoAgent, variant: str) -> None:
    subject, token = await attack(mesh, echo)
    sealed = mesh.seal(Echo("unsigned"), token=token)
    if variant == "no-signature-headers":
        headers = {MSG_ID_HEADER: sealed.envelope.id}
    else:
        headers = {**sealed.headers, SCHEME_HEADER: "rsa-sha256"}
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, headers)
    await assert_refused(mesh, echo, "unsigned", data=sealed.data)


@pytest.mark.parametrize("variant", ["flipped-signature-bit", "tampered-body"])
async def test_bad_signature(mesh: Mesh, echo: EchoAgent, variant: str) -> None:
    subject, token = await attack(mesh, echo)
    sealed = mesh.seal(Echo("forged"), token=token)
    data, headers = sealed.data, dict(sealed.headers)
    if variant == "flipped-signature-bit":
        signature = bytearray(b64d(headers[SIGNATURE_HEADER]))
        signature[17] ^= 0x04
        headers[SIGNATURE_HEADER] = b64e(bytes(signature))
    else:
        data = data.replace(b'"forged"', b'"Forged"')
        assert data != sealed.data
    attacker = await mesh.attacker()
    await attacker.publish(subject, data, headers)
    await assert_refused(mesh, echo, "bad-signature", data=data)


async def test_unknown_key_id(mesh: Mesh, echo: EchoAgent) -> None:
    subject, token = await attack(mesh, echo)
    ghost = KeyPair.generate("ghost")
    sealed = mesh.seal(Echo("ghost"), token=token, sender="ghost")
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, signed_by(ghost, sealed))
    await assert_refused(mesh, echo, "unknown-key", data=sealed.data)


async def test_expired_key(mesh: Mesh, echo: EchoAgent) -> None:
    subject, token = await attack(mesh, echo)
    relic = KeyPair.generate("relic")
    publish, subscribe = default_permissions(mesh.subjects, "relic")
    an_hour_ago = time.time() - 3600
    certificate = issue_certificate(
        mesh.root, relic, publish=publish, subscribe=subscribe, ttl_s=60, now=an_hour_ago
    )
    await mesh.register_certificate(relic.kid, certificate)
    sealed = mesh.seal(Echo("relic"), token=token, sender="relic")
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, signed_by(relic, sealed))
    await assert_refused(mesh, echo, "expired-key", data=sealed.data)


async def test_certificate_signed_by_another_root(mesh: Mesh, echo: EchoAgent) -> None:
    subject, token = await attack(mesh, echo)
    other_root = KeyPair.generate("root")
    mallory = KeyPair.generate("mallory")
    publish, subscribe = default_permissions(mesh.subjects, "mallory")
    certificate = issue_certificate(
        other_root, mallory, publish=publish, subscribe=subscribe, ttl_s=3600
    )
    await mesh.register_certificate(mallory.kid, certificate)
    sealed = mesh.seal(Echo("mallory"), token=token, sender="mallory")
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, signed_by(mallory, sealed))
    await assert_refused(mesh, echo, "untrusted-certificate", data=sealed.data)


# -- replays -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["other-msg-id", "no-msg-id"])
async def test_replayed_envelope(mesh: Mesh, echo: EchoAgent, variant: str) -> None:
    subject, token = await attack(mesh, echo)
    sealed = mesh.seal(Echo("once"), token=token)
    attacker = await mesh.attacker()
    first = mesh.expect_reply(sealed.envelope)
    await attacker.publish(subject, sealed.data, sealed.headers)
    reply = await first
    assert decode_body(reply, Echo) == Echo("ONCE")

    headers = {k: v for k, v in sealed.headers.items() if k != MSG_ID_HEADER}
    if variant == "other-msg-id":
        headers[MSG_ID_HEADER] = "replay-" + sealed.envelope.id
    refusal = mesh.expect_reply(sealed.envelope)
    ack = await attacker.publish(subject, sealed.data, headers)
    assert not ack.duplicate, "the stream stores it: only the receiver can spot this replay"
    await assert_error_reply(refusal, "replayed")
    await assert_refused(
        mesh,
        echo,
        "replayed",
        data=sealed.data,
        envelope=sealed.envelope,
        handled_before=("once",),
    )


async def test_replay_with_same_msg_id_is_deduplicated_by_the_stream(
    mesh: Mesh, echo: EchoAgent
) -> None:
    subject, token = await attack(mesh, echo)
    sealed = mesh.seal(Echo("once"), token=token)
    attacker = await mesh.attacker()
    reply = mesh.expect_reply(sealed.envelope)
    first = await attacker.publish(subject, sealed.data, sealed.headers)
    again = await attacker.publish(subject, sealed.data, sealed.headers)
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    assert decode_body(await reply, Echo) == Echo("ONCE")

    client = await mesh.ingress()
    after = await client.request("echo", Echo("after"), token=token, returns=Echo)
    assert after == Echo("AFTER")
    assert echo.seen == ["once", "after"], "the handler ran exactly once for the envelope"
    assert await mesh.dead_letters("echo") == []


# -- addressing, freshness, caller -------------------------------------------------------------


@pytest.mark.parametrize("variant", ["to-other-agent", "sender-not-signer", "reply-kind-on-task"])
async def test_misaddressed(mesh: Mesh, echo: EchoAgent, variant: str) -> None:
    subject, token = await attack(mesh, echo)
    changes = {
        "to-other-agent": {"to": "billing"},
        "sender-not-signer": {"sender": "echo"},
        "reply-kind-on-task": {"kind": "reply"},
    }[variant]
    sealed = mesh.seal(Echo("lost"), token=token, **changes)
    attacker = await mesh.attacker()
    refusal = mesh.expect_reply(sealed.envelope, answered_by="echo")
    await attacker.publish(subject, sealed.data, sealed.headers)
    if variant == "to-other-agent":
        await assert_error_reply(refusal, "misaddressed")
    # Otherwise nobody can be told: a reply kind has no caller waiting, and a forged sender
    # is not answered at all. Nor is its envelope trusted to name the audit's workflow.
    readable = None if variant == "sender-not-signer" else sealed.envelope
    await assert_refused(mesh, echo, "misaddressed", data=sealed.data, envelope=readable)


@pytest.mark.parametrize("shift_s", [-3600.0, 3600.0], ids=["too-old", "from-the-future"])
async def test_stale(mesh: Mesh, echo: EchoAgent, shift_s: float) -> None:
    subject, token = await attack(mesh, echo)
    sealed = mesh.seal(Echo("stale"), token=token, created=time.time() + shift_s)
    attacker = await mesh.attacker()
    refusal = mesh.expect_reply(sealed.envelope)
    await attacker.publish(subject, sealed.data, sealed.headers)
    await assert_error_reply(refusal, "stale")
    await assert_refused(mesh, echo, "stale", data=sealed.data, envelope=sealed.envelope)


def expired_token(client: MeshClient) -> str:
    """A token the ingress minted an hour ago, valid for a minute."""
    return mint_token(
        client.identity.key,
        subject="alice",
        tenant="acme",
        scopes=(),
        ttl_s=60,
        now=time.time() - 3600,
    )


async def test_expired_caller_token(mesh: Mesh, echo: EchoAgent) -> None:
    subject, _ = await attack(mesh, echo)
    expired = expired_token(await mesh.ingress())
    sealed = mesh.seal(Echo("late"), token=expired)
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, sealed.headers)
    await assert_refused(mesh, echo, "expired-token", data=sealed.data, envelope=sealed.envelope)


async def test_expired_caller_token_is_answered(mesh: Mesh, echo: EchoAgent) -> None:
    subject, _ = await attack(mesh, echo)
    sealed = mesh.seal(Echo("late"), token=expired_token(await mesh.ingress()))
    attacker = await mesh.attacker()
    refusal = mesh.expect_reply(sealed.envelope)
    await attacker.publish(subject, sealed.data, sealed.headers)
    await assert_error_reply(refusal, "expired-token", timeout=2.0)


# -- bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b'{"id":"01J","kind":"task","workflow":', b'{"id":"01J","kind":"task"}', b"[1, 2, 3]"],
    ids=["truncated-json", "missing-fields", "not-an-object"],
)
async def test_malformed_signed_json(mesh: Mesh, echo: EchoAgent, data: bytes) -> None:
    subject, _ = await attack(mesh, echo)
    client = await mesh.ingress()
    attacker = await mesh.attacker()
    await attacker.publish(subject, data, client.signer.headers(data))
    await assert_refused(mesh, echo, "malformed", data=data)


SCHEMA_CASES = {
    "wrong-field-type": (msgspec.Raw(b'{"text": 42}'), "test.Echo/1"),
    "missing-field": (msgspec.Raw(b'{"words": "hi"}'), "test.Echo/1"),
    "no-handler-for-type": (Echo("typo"), "test.Ekho/1"),
}


def schema_violation(mesh: Mesh, token: str, case: str) -> Sealed:
    body, type_ = SCHEMA_CASES[case]
    return mesh.seal(body, token=token, type_=type_)


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
async def test_payload_failing_its_schema(mesh: Mesh, echo: EchoAgent, case: str) -> None:
    subject, token = await attack(mesh, echo)
    sealed = schema_violation(mesh, token, case)
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, sealed.headers)
    dead = await mesh.wait_dead_letters("echo", "schema-violation")
    assert [d.data for d in dead] == [sealed.data]
    # Accept either place here and check that exactly one event exists across both; the test
    # below pins it to the task's workflow.
    deadline = time.monotonic() + WAIT_S
    found: list[LoggedEvent] = []
    while not found and time.monotonic() < deadline:
        for workflow in (sealed.envelope.workflow, UNVERIFIED_WORKFLOW):
            found += rejected(await mesh.events(workflow), "schema-violation")
    assert len(found) == 1
    assert found[0].event.agent == "echo"
    client = await mesh.ingress()
    after = await client.request("echo", Echo("after"), token=token, returns=Echo)
    assert after == Echo("AFTER")
    assert echo.seen == ["after"]


async def test_payload_failing_its_schema_is_audited_in_its_workflow_and_answered(
    mesh: Mesh, echo: EchoAgent
) -> None:
    subject, token = await attack(mesh, echo)
    sealed = schema_violation(mesh, token, "wrong-field-type")
    attacker = await mesh.attacker()
    refusal = mesh.expect_reply(sealed.envelope)
    await attacker.publish(subject, sealed.data, sealed.headers)
    await mesh.wait_dead_letters("echo", "schema-violation")
    logged = await mesh.wait_events(
        sealed.envelope.workflow, lambda got: bool(rejected(got, "schema-violation")), timeout=2
    )
    assert len(rejected(logged, "schema-violation")) == 1
    await assert_error_reply(refusal, "schema-violation", timeout=2.0)


async def test_payload_over_the_size_limit(mesh: Mesh, echo: EchoAgent) -> None:
    mesh.configure(max_payload_bytes=4096)
    subject, token = await attack(mesh, echo)
    sealed = mesh.seal(Echo("big" + "x" * 5000), token=token)
    assert len(sealed.data) > 4096
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, sealed.headers)
    await assert_refused(mesh, echo, "oversized", data=sealed.data)


async def test_step_with_a_colon_is_malformed(mesh: Mesh, echo: EchoAgent) -> None:
    """A step ends up in Redis keys, where a role's glob patterns cannot stop at ':'
    (``mesh:result:*:kb:*`` would match another role's result of step ``x:kb:y``)."""
    subject, token = await attack(mesh, echo)
    sealed = mesh.seal(Echo("colon"), token=token, step="echo:kb:x")
    reply = mesh.expect_reply(sealed.envelope)
    attacker = await mesh.attacker()
    await attacker.publish(subject, sealed.data, sealed.headers)
    await assert_error_reply(reply, "malformed")
    await assert_refused(mesh, echo, "malformed", data=sealed.data, envelope=sealed.envelope)
