"""The verifier, check by check, on real signed messages and an in-memory registry."""

from __future__ import annotations

import time
from types import SimpleNamespace

import msgspec
import pytest

from jetmesh import (
    BadSignature,
    ExpiredToken,
    InvalidToken,
    Malformed,
    Misaddressed,
    Oversized,
    Replayed,
    Stale,
    UnknownKey,
    Unsigned,
)
from jetmesh.addresses import Subjects
from jetmesh.envelope import encode_envelope, new_id
from jetmesh.identity import verifier as verifier_module
from jetmesh.identity.keys import KeyPair, b64d, b64e
from jetmesh.identity.signing import KEY_HEADER, SCHEME_HEADER, SIGNATURE_HEADER, Signer
from jetmesh.identity.tokens import mint_token
from jetmesh.identity.verifier import MSG_ID_HEADER, Verifier

TASK = "mesh.agent.billing.task"
REPLY = "mesh.agent.gateway.reply.i1"
MAX_AGE, SKEW = 110.0, 5.0


def make_verifier(pki, max_payload_bytes: int = 256 * 1024) -> Verifier:
    return Verifier(
        pki.trust(leeway_s=SKEW),
        Subjects("mesh"),
        max_payload_bytes=max_payload_bytes,
        max_age_s=MAX_AGE,
        clock_skew_s=SKEW,
    )


@pytest.fixture
def verifier(pki) -> Verifier:
    return make_verifier(pki)


@pytest.fixture
def task(gateway: KeyPair, token: str, envelope, chain, sealed):
    """A valid task from the gateway to billing: ``(envelope, data, headers)``."""
    env = chain(envelope(sender="gateway", to="billing", caller=token), gateway)
    return (env, *sealed(gateway, env))


async def test_valid_task_passes(verifier: Verifier, task, gateway: KeyPair) -> None:
    env, data, headers = task
    verified = await verifier.verify(TASK, data, headers, stored_at=time.time())
    assert verified.envelope == env
    assert verified.certificate.kid == gateway.kid
    assert verified.caller is not None
    assert verified.caller.subject == "alice"


async def test_oversized_is_refused_before_anything_else(pki, task) -> None:
    _, data, _ = task
    verifier = make_verifier(pki, max_payload_bytes=len(data) - 1)
    with pytest.raises(Oversized, match=f"{len(data)} bytes"):
        await verifier.verify(TASK, data, None, stored_at=time.time())
    assert pki.lookups == []


@pytest.mark.parametrize("headers", [None, {}, {MSG_ID_HEADER: "x"}])
async def test_unsigned(verifier: Verifier, task, headers) -> None:
    with pytest.raises(Unsigned):
        await verifier.verify(TASK, task[1], headers, stored_at=time.time())


@pytest.mark.parametrize(
    ("dropped", "detail"),
    [
        ({KEY_HEADER, SIGNATURE_HEADER}, "no Mesh-Key and no Mesh-Sig header"),
        ({SIGNATURE_HEADER}, "no Mesh-Sig header"),
        ({KEY_HEADER}, "no Mesh-Key header"),
    ],
)
async def test_unsigned_names_the_missing_header(
    verifier: Verifier, task, dropped: set[str], detail: str
) -> None:
    _, data, headers = task
    kept = {k: v for k, v in headers.items() if k not in dropped}
    with pytest.raises(Unsigned) as refused:
        await verifier.verify(TASK, data, kept, stored_at=time.time())
    assert refused.value.detail == detail


@pytest.mark.parametrize("scheme", [None, "ed448", "ED25519", ""])
async def test_unknown_scheme(verifier: Verifier, task, scheme: str | None) -> None:
    _, data, headers = task
    headers = {k: v for k, v in headers.items() if k != SCHEME_HEADER}
    if scheme is not None:
        headers[SCHEME_HEADER] = scheme
    with pytest.raises(Unsigned, match="scheme"):
        await verifier.verify(TASK, data, headers, stored_at=time.time())


async def test_unknown_kid(verifier: Verifier, token: str, envelope, sealed) -> None:
    stranger = KeyPair.generate("gateway")
    data, headers = sealed(stranger, envelope(sender="gateway", to="billing", caller=token))
    with pytest.raises(UnknownKey):
        await verifier.verify(TASK, data, headers, stored_at=time.time())


async def test_flipped_signature_bit(verifier: Verifier, task) -> None:
    _, data, headers = task
    raw = bytearray(b64d(headers[SIGNATURE_HEADER]))
    raw[10] ^= 0x01
    with pytest.raises(BadSignature):
        await verifier.verify(TASK, data, {**headers, SIGNATURE_HEADER: b64e(raw)}, stored_at=None)


async def test_body_swapped_under_a_valid_signature(verifier: Verifier, task) -> None:
    env, _, headers = task
    swapped = encode_envelope(msgspec.structs.replace(env, body=msgspec.Raw(b'{"refund":1e6}')))
    with pytest.raises(BadSignature):
        await verifier.verify(TASK, swapped, headers, stored_at=time.time())


async def test_sender_must_be_the_certificate_name(
    verifier: Verifier, gateway: KeyPair, token: str, envelope, sealed
) -> None:
    env = envelope(sender="billing", to="billing", caller=token)
    with pytest.raises(Misaddressed, match="signed with 'gateway'") as info:
        await verifier.verify(TASK, *sealed(gateway, env), stored_at=time.time())
    # a forged sender's envelope is not attached: nobody answers it or files it under its
    # workflow
    assert not hasattr(info.value, "envelope")


async def test_subject_not_allowed_by_certificate(pki, token: str, envelope, sealed) -> None:
    key, _ = pki.issue("narrow", publish=["mesh.agent.kb.task"])
    env = envelope(sender="narrow", to="billing", caller=token)
    with pytest.raises(Misaddressed, match="may not publish"):
        await make_verifier(pki).verify(TASK, *sealed(key, env), stored_at=time.time())


async def test_to_must_match_the_subject(
    verifier: Verifier, gateway: KeyPair, token: str, envelope, sealed
) -> None:
    env = envelope(sender="gateway", to="kb", caller=token)
    with pytest.raises(Misaddressed, match="to 'kb'"):
        await verifier.verify(TASK, *sealed(gateway, env), stored_at=time.time())


async def test_event_kind_not_allowed_on_a_task_subject(
    verifier: Verifier, gateway: KeyPair, token: str, envelope, sealed
) -> None:
    env = envelope(sender="gateway", to="billing", caller=token, kind="event")
    with pytest.raises(Misaddressed, match="'event' envelope"):
        await verifier.verify(TASK, *sealed(gateway, env), stored_at=time.time())


@pytest.mark.parametrize(
    ("offset", "match"),
    [(-(MAX_AGE + SKEW + 1), "before it was received"), (SKEW + 1, "in the future")],
)
async def test_stale_or_future_created(
    verifier: Verifier, gateway: KeyPair, token: str, envelope, sealed, offset: float, match: str
) -> None:
    stored_at = time.time()
    env = envelope(sender="gateway", to="billing", caller=token, created=stored_at + offset)
    with pytest.raises(Stale, match=match):
        await verifier.verify(TASK, *sealed(gateway, env), stored_at=stored_at)


async def test_freshness_is_judged_at_storage_time(
    verifier: Verifier, gateway: KeyPair, token: str, envelope, chain, sealed
) -> None:
    stored_at = time.time() - 3 * MAX_AGE
    env = chain(
        envelope(sender="gateway", to="billing", caller=token, created=stored_at - 1), gateway
    )
    verified = await verifier.verify(TASK, *sealed(gateway, env), stored_at=stored_at)
    assert verified.envelope.id == env.id


@pytest.mark.parametrize("msg_id", ["another-id", None])
async def test_msg_id_must_equal_envelope_id(verifier: Verifier, task, msg_id: str | None) -> None:
    _, data, headers = task
    headers = {k: v for k, v in headers.items() if k != MSG_ID_HEADER}
    if msg_id is not None:
        headers[MSG_ID_HEADER] = msg_id
    with pytest.raises(Replayed, match="Nats-Msg-Id"):
        await verifier.verify(TASK, data, headers, stored_at=time.time())


async def test_core_replay_of_the_same_id(
    verifier: Verifier, billing: KeyPair, token: str, envelope, sealed
) -> None:
    env = envelope(sender="billing", to="gateway", caller=token, kind="reply")
    data, headers = sealed(billing, env)
    assert (await verifier.verify(REPLY, data, headers, stored_at=None)).envelope.kind == "reply"
    with pytest.raises(Replayed, match=env.id):
        await verifier.verify(REPLY, data, headers, stored_at=None)


async def test_core_replay_after_the_seen_set_forgets(
    verifier: Verifier, billing: KeyPair, token: str, envelope, sealed, monkeypatch
) -> None:
    clock = SimpleNamespace(now=time.time())
    monkeypatch.setattr(verifier_module, "time", SimpleNamespace(time=lambda: clock.now))
    env = envelope(sender="billing", to="gateway", caller=token, kind="reply", created=clock.now)
    data, headers = sealed(billing, env)
    clock.now -= SKEW  # the receiver's clock is behind the sender's
    await verifier.verify(REPLY, data, headers, stored_at=None)
    clock.now = env.created + MAX_AGE + SKEW / 2
    with pytest.raises((Replayed, Stale)):
        await verifier.verify(REPLY, data, headers, stored_at=None)


async def test_expired_caller_token(verifier: Verifier, gateway: KeyPair, envelope, sealed) -> None:
    old = mint_token(
        gateway, subject="alice", tenant="t", scopes=[], ttl_s=60, now=time.time() - 600
    )
    env = envelope(sender="gateway", to="billing", caller=old)
    with pytest.raises(ExpiredToken):
        await verifier.verify(TASK, *sealed(gateway, env), stored_at=time.time())


@pytest.mark.parametrize("minted_by_agent", [True, False])
async def test_token_not_from_an_ingress(
    verifier: Verifier, billing: KeyPair, envelope, sealed, minted_by_agent: bool
) -> None:
    caller = (
        mint_token(billing, subject="root", tenant="t", scopes=["*"], ttl_s=60)
        if minted_by_agent
        else ""
    )
    env = envelope(sender="billing", to="billing", caller=caller)
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(TASK, *sealed(billing, env), stored_at=time.time())
    assert not isinstance(info.value, ExpiredToken)


async def test_event_without_caller_has_no_caller(
    verifier: Verifier, billing: KeyPair, envelope, sealed
) -> None:
    env = envelope(sender="billing", to="events", caller="", kind="event")
    subject = f"mesh.event.{env.workflow}.rejected"
    verified = await verifier.verify(subject, *sealed(billing, env), stored_at=time.time())
    assert verified.caller is None


async def test_malformed_json_under_a_valid_signature(verifier: Verifier, gateway: KeyPair) -> None:
    data = b'{"id": "01J", "kind": "task"'
    headers = {**Signer(gateway).headers(data), MSG_ID_HEADER: "01J"}
    with pytest.raises(Malformed):
        await verifier.verify(TASK, data, headers, stored_at=time.time())


async def test_audit_accepts_a_token_valid_when_stored(pki, envelope, chain, sealed) -> None:
    now = time.time()
    ingress, _ = pki.issue("archive", ingress=True, ttl_s=20_000, now=now - 10_000)
    old = mint_token(ingress, subject="alice", tenant="t", scopes=[], ttl_s=3600, now=now - 7200)
    stored_at = now - 5000
    env = envelope(sender="archive", to="billing", caller=old, created=stored_at, id=new_id())
    env = chain(env, ingress)
    data, headers = sealed(ingress, env)
    with pytest.raises(ExpiredToken):
        await make_verifier(pki).verify(TASK, data, headers, stored_at=stored_at)
    verified = await make_verifier(pki).verify(TASK, data, headers, stored_at=stored_at, audit=True)
    assert verified.caller is not None
    assert verified.caller.subject == "alice"
