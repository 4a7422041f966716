"""The trust store: certificates and caller tokens verified once, cached, re-checked on use."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from nacl.signing import VerifyKey

from jetmesh import (
    ExpiredKey,
    ExpiredToken,
    InvalidToken,
    UnknownKey,
    UntrustedCertificate,
)
from jetmesh.identity import trust as trust_module
from jetmesh.identity.certificates import issue_certificate
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.tokens import mint_token


class Clock:
    """A settable ``time.time`` for the trust module."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(trust_module, "time", SimpleNamespace(time=clock))
    return clock


async def test_certificate_is_looked_up_once_and_cached(pki, billing: KeyPair) -> None:
    trust = pki.trust()
    cert, public = await trust.certificate(billing.kid)
    again, public_again = await trust.certificate(billing.kid)
    assert pki.lookups == [billing.kid]
    assert again is cert
    assert cert.name == "billing"
    assert isinstance(public, VerifyKey)
    assert bytes(public) == billing.public_key
    assert public_again is public


async def test_added_certificate_needs_no_lookup(pki) -> None:
    key, cert_jwt = pki.issue("self")
    trust = pki.trust()
    assert trust.add(cert_jwt).kid == key.kid
    cert, _ = await trust.certificate(key.kid)
    assert cert.name == "self"
    assert pki.lookups == []


async def test_unknown_kid_is_negatively_cached(pki, clock: Clock) -> None:
    trust = pki.trust()
    ghost = KeyPair.generate("ghost").kid
    with pytest.raises(UnknownKey, match=ghost):
        await trust.certificate(ghost)
    with pytest.raises(UnknownKey):
        await trust.certificate(ghost)
    assert pki.lookups == [ghost]
    clock.now += trust_module.NEGATIVE_TTL_S + 0.1
    with pytest.raises(UnknownKey):
        await trust.certificate(ghost)
    assert pki.lookups == [ghost, ghost]


async def test_key_registered_after_a_miss_is_found_later(pki, clock: Clock) -> None:
    trust = pki.trust()
    key = KeyPair.generate("late")
    with pytest.raises(UnknownKey):
        await trust.certificate(key.kid)
    late, cert_jwt = pki.issue("late")
    clock.now += trust_module.NEGATIVE_TTL_S + 0.1
    cert, _ = await trust.certificate(late.kid)
    assert cert.token == cert_jwt


async def test_registry_entry_for_another_kid_is_refused(pki, billing: KeyPair) -> None:
    other, other_cert = pki.issue("other")
    pki.registry[billing.kid] = other_cert
    trust = pki.trust()
    with pytest.raises(UnknownKey, match="holds a certificate for"):
        await trust.certificate(billing.kid)
    cert, _ = await trust.certificate(other.kid)
    assert cert.name == "other"


async def test_certificate_from_another_root_is_untrusted_and_not_cached(pki) -> None:
    key, _ = pki.issue("rogue", signer=KeyPair.generate("root"))
    trust = pki.trust()
    for _ in range(2):
        with pytest.raises(UntrustedCertificate):
            await trust.certificate(key.kid)
    assert pki.lookups == [key.kid, key.kid]


async def test_cached_certificate_expires_at_use_time(pki, clock: Clock) -> None:
    key, _ = pki.issue("shortlived", ttl_s=60)
    trust = pki.trust(leeway_s=5)
    await trust.certificate(key.kid)
    clock.now += 60 + 4
    await trust.certificate(key.kid)
    clock.now += 2
    with pytest.raises(ExpiredKey, match="expired"):
        await trust.certificate(key.kid)
    # Each use more than CERTIFICATE_TTL_S after the last reads the (unchanged) entry again.
    assert pki.lookups == [key.kid] * 3


async def test_expired_certificate_is_refused_on_lookup(pki) -> None:
    key, _ = pki.issue("old", ttl_s=3600, now=time.time() - 7200)
    with pytest.raises(ExpiredKey):
        await pki.trust().certificate(key.kid)


async def test_certificate_valid_at_an_earlier_time(pki) -> None:
    issued = time.time() - 7200
    key, _ = pki.issue("old", ttl_s=3600, now=issued)
    cert, _ = await pki.trust().certificate(key.kid, at=issued + 60)
    assert cert.name == "old"


async def test_cache_is_bounded(pki) -> None:
    first, _ = pki.issue("first")
    second, _ = pki.issue("second")
    trust = pki.trust(cache_size=1)
    await trust.certificate(first.kid)
    await trust.certificate(second.kid)
    await trust.certificate(first.kid)
    assert pki.lookups == [first.kid, second.kid, first.kid]


async def test_caller_is_verified_once_and_cached(
    pki, token: str, gateway: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = trust_module.verify_token

    def counting(token: str, *args: object, **kwargs: object) -> object:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(trust_module, "verify_token", counting)
    trust = pki.trust()
    caller = await trust.caller(token)
    assert await trust.caller(token) is caller
    assert caller.subject == "alice"
    assert caller.tenant == "acme"
    assert calls == [token]
    assert pki.lookups == [gateway.kid]


async def test_cached_caller_expires_at_use_time(pki, gateway: KeyPair, clock: Clock) -> None:
    token = mint_token(gateway, subject="bob", tenant="t", scopes=[], ttl_s=60)
    trust = pki.trust(leeway_s=5)
    assert (await trust.caller(token)).subject == "bob"
    clock.now += 60 + 6
    with pytest.raises(ExpiredToken):
        await trust.caller(token)


async def test_caller_token_from_an_agent_is_invalid(pki, billing: KeyPair) -> None:
    token = mint_token(billing, subject="alice", tenant="t", scopes=["*"], ttl_s=60)
    with pytest.raises(InvalidToken, match="not an ingress"):
        await pki.trust().caller(token)


async def test_caller_token_from_an_unknown_key(pki) -> None:
    stranger = KeyPair.generate("gateway")
    token = mint_token(stranger, subject="alice", tenant="t", scopes=[], ttl_s=60)
    with pytest.raises(UnknownKey):
        await pki.trust().caller(token)


@pytest.mark.parametrize("token", ["", "not-a-jwt"])
async def test_unreadable_caller_token(pki, token: str) -> None:
    with pytest.raises(InvalidToken):
        await pki.trust().caller(token)
    assert pki.lookups == []


async def test_audit_of_a_message_signed_before_a_renewal(pki) -> None:
    now = time.time()
    key, _ = pki.issue("archive", ttl_s=20_000, now=now - 10_000)
    pki.registry[key.kid] = issue_certificate(
        pki.root, key, publish=[], subscribe=[], ttl_s=20_000, now=now - 100
    )
    cert, _ = await pki.trust().certificate(key.kid, at=now - 5000)
    assert cert.kid == key.kid
