"""The trust store's caches: a certificate re-issued for the same key id takes effect within
CERTIFICATE_TTL_S, nothing cached outlives its signer's certificate, the negative cache is
bounded, and a key id is checked before any registry read."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from jetmesh import (
    BadDelegation,
    ExpiredKey,
    InvalidToken,
    Misaddressed,
    RegistryUnavailable,
    RejectedMessage,
    UnknownKey,
)
from jetmesh.addresses import Subjects
from jetmesh.envelope import new_id
from jetmesh.identity import trust as trust_module
from jetmesh.identity.certificates import default_permissions, issue_certificate
from jetmesh.identity.delegation import digest, mint_link
from jetmesh.identity.jws import b64e
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.revocation import Revocation
from jetmesh.identity.tokens import mint_token
from jetmesh.identity.verifier import Verifier

SUBJECTS = Subjects("mesh")
TASK = "mesh.agent.billing.task"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(trust_module, "time", SimpleNamespace(time=clock))
    return clock


def reissue(pki: Any, key: KeyPair, **changes: Any) -> str:
    """A new certificate for the same key (same key id), registered in place of the old."""
    publish, subscribe = default_permissions(SUBJECTS, key.owner)
    options: dict[str, Any] = {
        "publish": publish,
        "subscribe": subscribe,
        "ingress": False,
        "ttl_s": 3600.0,
    }
    options.update(changes)
    cert = issue_certificate(pki.root, key, **options)
    pki.registry[key.kid] = cert
    return cert


class Revocations:
    """The revocation look-up, counting its reads."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    async def __call__(self, kid: str) -> Revocation | None:
        self.reads.append(kid)
        return None


# -- (a) a re-issued certificate is read again within CERTIFICATE_TTL_S --------------------


async def test_a_reissued_certificate_replaces_the_cached_one_within_the_ttl(
    pki: Any, billing: KeyPair, clock: Clock
) -> None:
    trust = pki.trust()
    before, _ = await trust.certificate(billing.kid)
    assert before.scopes == frozenset()
    reissue(pki, billing, scopes=["kb:read"])
    clock.now += trust_module.CERTIFICATE_TTL_S - 0.1
    cached, _ = await trust.certificate(billing.kid)
    assert cached is before  # within the TTL: no read
    assert pki.lookups == [billing.kid]
    clock.now += 0.2
    after, _ = await trust.certificate(billing.kid)
    assert after.scopes == frozenset({"kb:read"})
    assert pki.lookups == [billing.kid, billing.kid]


async def test_an_unchanged_entry_keeps_the_verified_certificate(
    pki: Any, billing: KeyPair, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust = pki.trust()
    cert, key = await trust.certificate(billing.kid)
    verified: list[str] = []
    monkeypatch.setattr(trust_module, "verify_certificate", lambda *a, **k: verified.append(a[0]))
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    assert await trust.certificate(billing.kid) == (cert, key)
    assert len(pki.lookups) == 2
    assert verified == []  # same text: not verified again


async def test_a_cached_caller_token_is_refused_when_its_issuer_loses_the_ingress_flag(
    pki: Any, gateway: KeyPair, token: str, clock: Clock
) -> None:
    trust = pki.trust()
    assert (await trust.caller(token)).subject == "alice"
    reissue(pki, gateway, ingress=False)
    assert (await trust.caller(token)).subject == "alice"  # within the TTL
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    with pytest.raises(InvalidToken, match="not an ingress"):
        await trust.caller(token)


async def test_a_cached_link_is_refused_when_its_signer_loses_the_ingress_flag(
    pki: Any, gateway: KeyPair, token: str, clock: Clock
) -> None:
    trust = pki.trust()
    link = mint_link(
        gateway, to="billing", workflow="W", step="billing", scopes=[], expires=2e9, prev="p"
    )
    assert (await trust.link(link))[1] is True
    reissue(pki, gateway, ingress=False)
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    assert (await trust.link(link))[1] is False  # check_chain refuses a chain it starts


async def test_a_link_is_checked_again_with_the_reissued_certificates_owner(
    pki: Any, clock: Clock
) -> None:
    key, cert = pki.issue("triage")
    trust = pki.trust()
    link = mint_link(key, to="kb", workflow="W", step="t/kb.1", scopes=[], expires=2e9, prev="p")
    assert (await trust.link(link))[0].by == "triage"
    # The same key id certified for another role: the cached link names triage.
    claims = jwt.decode(cert, options={"verify_signature": False})
    headers = jwt.get_unverified_header(cert)
    pki.registry[key.kid] = jwt.encode(
        {**claims, "sub": "other"}, pki.root.jwt_key(), algorithm="EdDSA", headers=headers
    )
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    with pytest.raises(BadDelegation, match="signed with other's key"):
        await trust.link(link)


async def test_narrowed_publish_subjects_take_effect_in_the_verifier(
    pki: Any, gateway: KeyPair, token: str, envelope: Any, chain: Any, sealed: Any, clock: Clock
) -> None:
    verifier = Verifier(
        pki.trust(), SUBJECTS, max_payload_bytes=1 << 20, max_age_s=110, clock_skew_s=5
    )

    async def send() -> None:
        env = chain(envelope(sender="gateway", to="billing", caller=token), gateway)
        data, headers = sealed(gateway, env)
        await verifier.verify(TASK, data, headers, stored_at=clock.now)

    await send()
    reissue(pki, gateway, ingress=True, publish=["mesh.event.>"])
    await send()  # within the TTL the cached certificate still allows it
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    with pytest.raises(Misaddressed, match="may not publish"):
        await send()


async def test_a_removed_registry_entry_makes_the_key_unknown(
    pki: Any, billing: KeyPair, clock: Clock
) -> None:
    trust = pki.trust()
    await trust.certificate(billing.kid)
    del pki.registry[billing.kid]
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    with pytest.raises(UnknownKey, match="removed"):
        await trust.certificate(billing.kid)
    with pytest.raises(UnknownKey):  # and stays unknown (negatively cached)
        await trust.certificate(billing.kid)
    assert len(pki.lookups) == 2


async def test_an_unreadable_registry_keeps_the_cached_certificate(
    pki: Any, billing: KeyPair, clock: Clock
) -> None:
    trust = pki.trust()
    cert, _ = await trust.certificate(billing.kid)

    async def broken(kid: str) -> str | None:
        raise ConnectionError("registry down")

    trust._lookup = broken  # the bucket cannot be read for a while
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    assert (await trust.certificate(billing.kid))[0] is cert


async def test_an_unreadable_registry_decides_nothing_about_an_unknown_key(
    pki: Any, billing: KeyPair
) -> None:
    """A certificate that cannot be read (servers away, a cluster electing a leader) is not
    a refusal: the message is taken again later, not dead-lettered as from an unknown key."""
    trust = pki.trust()

    async def broken(kid: str) -> str | None:
        raise TimeoutError("nats: timeout")

    trust._lookup = broken
    with pytest.raises(RegistryUnavailable) as raised:
        await trust.certificate(billing.kid)
    assert not isinstance(raised.value, RejectedMessage)
    trust._lookup = pki.lookup  # readable again: the key is known, nothing was cached
    cert, _ = await trust.certificate(billing.kid)
    assert cert.kid == billing.kid


async def test_a_reissued_certificate_that_expired_is_refused(
    pki: Any, billing: KeyPair, clock: Clock
) -> None:
    trust = pki.trust(leeway_s=0)
    await trust.certificate(billing.kid)
    reissue(pki, billing, ttl_s=60, now=clock.now - 3600)
    clock.now += trust_module.CERTIFICATE_TTL_S + 0.1
    with pytest.raises(ExpiredKey):
        await trust.certificate(billing.kid)


# -- (b) nothing cached outlives its signer's certificate -------------------------------------


async def test_a_cached_caller_token_dies_with_its_issuers_certificate(
    pki: Any, clock: Clock
) -> None:
    ingress, _ = pki.issue("edge", ingress=True, ttl_s=120)
    token = mint_token(ingress, subject="alice", tenant="t", scopes=[], ttl_s=3600)
    trust = pki.trust(leeway_s=5, certificate_ttl_s=1e9)  # no re-read: expiry alone
    assert (await trust.caller(token)).subject == "alice"
    clock.now += 120 + 6
    with pytest.raises(ExpiredKey):
        await trust.caller(token)


async def test_a_cached_link_dies_with_its_signers_certificate(pki: Any, clock: Clock) -> None:
    key, _ = pki.issue("triage", ttl_s=120)
    link = mint_link(key, to="kb", workflow="W", step="t", scopes=[], expires=2e9, prev="p")
    trust = pki.trust(leeway_s=5, certificate_ttl_s=1e9)
    await trust.link(link)
    clock.now += 120 + 6
    with pytest.raises(ExpiredKey):
        await trust.link(link)


# -- (c) key ids checked before any look-up; the negative cache is bounded -------------------


@pytest.mark.parametrize(
    "kid",
    [
        "",
        "ghost",
        "ghost-1",
        "ghost-3FA2C19E07B4D5A1",  # upper-case hex
        "ghost-3fa2c19e07b4d5a1\n",
        "g\u00e9-3fa2c19e07b4d5a1",
        "x" * 8000,
        "revoked.ghost-3fa2c19e07b4d5a1",
        "ghost-3fa2c19e07b4d5a1 ",
        "*",
        ">",
    ],
)
async def test_a_malformed_key_id_costs_no_registry_read(pki: Any, kid: str) -> None:
    revocations = Revocations()
    trust = pki.trust(revocations=revocations)
    with pytest.raises(UnknownKey, match="malformed key id") as refused:
        await trust.certificate(kid)
    assert pki.lookups == []
    assert revocations.reads == []
    assert len(str(refused.value)) < 160
    assert str(refused.value).isascii()
    assert "\n" not in str(refused.value)


async def test_an_unknown_key_id_costs_one_registry_read(pki: Any, clock: Clock) -> None:
    revocations = Revocations()
    trust = pki.trust(revocations=revocations)
    ghost = KeyPair.generate("ghost").kid
    for _ in range(3):
        with pytest.raises(UnknownKey):
            await trust.certificate(ghost)
    assert pki.lookups == [ghost]
    assert revocations.reads == []  # revocation is asked of known keys only


async def test_a_known_key_costs_a_certificate_and_a_revocation_read(
    pki: Any, billing: KeyPair
) -> None:
    revocations = Revocations()
    trust = pki.trust(revocations=revocations)
    for _ in range(3):
        await trust.certificate(billing.kid)
    assert pki.lookups == [billing.kid]
    assert revocations.reads == [billing.kid]


async def test_the_negative_cache_is_bounded(
    pki: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trust_module, "MISSING_CACHE_SIZE", 8)
    trust = pki.trust()
    ghosts = [f"ghost-{n:016x}" for n in range(9)]
    for kid in ghosts:
        with pytest.raises(UnknownKey):
            await trust.certificate(kid)
    assert len(trust._missing) == 8
    # The first was pushed out: within NEGATIVE_TTL_S it costs a read again; the last not.
    for kid in (ghosts[-1], ghosts[0]):
        with pytest.raises(UnknownKey):
            await trust.certificate(kid)
    assert pki.lookups == [*ghosts, ghosts[0]]


async def test_many_random_key_ids_leave_a_bounded_cache(pki: Any) -> None:
    trust = pki.trust()
    for n in range(20_000):
        with pytest.raises(UnknownKey):
            await trust.certificate(f"ghost-{n:016x}")
    assert len(trust._missing) == trust_module.MISSING_CACHE_SIZE


async def test_the_log_line_of_a_hostile_key_id_is_bounded(
    pki: Any, gateway: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    """What refusals.reject logs is the error: its text must stay short and escaped."""
    verifier = Verifier(
        pki.trust(), SUBJECTS, max_payload_bytes=1 << 20, max_age_s=110, clock_skew_s=5
    )
    hostile = "\u202e" + "k" * 7000 + "\n[/dim]"
    headers = {"Mesh-Sig-Scheme": "ed25519", "Mesh-Key": hostile, "Mesh-Sig": "AA"}
    with pytest.raises(UnknownKey) as refused:
        await verifier.verify(TASK, b"{}", headers, stored_at=None)
    with caplog.at_level(logging.WARNING):
        logging.getLogger("jetmesh.refusals").warning(
            "rejected message on %s: %s", TASK, refused.value
        )
    [record] = caplog.records
    assert len(record.getMessage()) < 250
    assert record.getMessage().isascii()
    assert pki.lookups == []


async def test_a_hostile_signature_scheme_is_shown_bounded(pki: Any) -> None:
    verifier = Verifier(
        pki.trust(), SUBJECTS, max_payload_bytes=1 << 20, max_age_s=110, clock_skew_s=5
    )
    headers = {"Mesh-Sig-Scheme": "s" * 7000, "Mesh-Key": "a-0000000000000000", "Mesh-Sig": "AA"}
    with pytest.raises(Exception, match="unknown signature scheme") as refused:
        await verifier.verify(TASK, b"{}", headers, stored_at=None)
    assert len(str(refused.value)) < 160


# -- (d) the workflow of an event subject is the envelope's ------------------------------------


async def test_an_event_on_another_workflows_subject_is_misaddressed(
    pki: Any, billing: KeyPair, envelope: Any, sealed: Any
) -> None:
    verifier = Verifier(
        pki.trust(), SUBJECTS, max_payload_bytes=1 << 20, max_age_s=110, clock_skew_s=5
    )
    mine, other = new_id(), new_id()
    env = envelope(sender="billing", to="events", caller="", kind="event", workflow=mine)
    data, headers = sealed(billing, env)
    ok = await verifier.verify(f"mesh.event.{mine}.started", data, headers, stored_at=time.time())
    assert ok.envelope.workflow == mine
    env = envelope(sender="billing", to="events", caller="", kind="event", workflow=mine)
    data, headers = sealed(billing, env)
    with pytest.raises(Misaddressed, match=f"workflow {mine} arrived on mesh.event.{other}"):
        await verifier.verify(f"mesh.event.{other}.started", data, headers, stored_at=time.time())


async def test_a_link_by_a_key_id_of_another_form_is_refused_before_any_read(
    pki: Any, gateway: KeyPair
) -> None:
    link = mint_link(
        gateway, to="billing", workflow="W", step="b", scopes=[], expires=2e9, prev=digest("t")
    )
    header = b'{"alg":"EdDSA","kid":"gateway-' + b"z" * 5000 + b'","typ":"mesh-delegation+jwt"}'
    forged = ".".join([b64e(header), *link.split(".")[1:]])
    with pytest.raises(UnknownKey, match="malformed key id"):
        await pki.trust().link(forged)
    assert pki.lookups == []
    with pytest.raises(BadDelegation):
        await pki.trust().link("a.b")
