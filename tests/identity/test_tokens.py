"""Caller tokens: minted at ingress, verified against the issuer's certificate."""

from __future__ import annotations

import json

import jwt
import pytest

from jetmesh import Caller, ExpiredToken, InvalidToken
from jetmesh.identity.certificates import Certificate, issue_certificate, verify_certificate
from jetmesh.identity.keys import KeyPair, b64e
from jetmesh.identity.tokens import mint_token, token_key_id, verify_token

NOW = 1_764_000_000.0
HOUR = 3600.0


@pytest.fixture(scope="module")
def root() -> KeyPair:
    return KeyPair.generate("root")


@pytest.fixture(scope="module")
def ingress_key() -> KeyPair:
    return KeyPair.generate("gateway")


def certify(root: KeyPair, key: KeyPair, *, ingress: bool) -> Certificate:
    token = issue_certificate(
        root, key, publish=[], subscribe=[], ingress=ingress, ttl_s=HOUR * 24, now=NOW
    )
    return verify_certificate(token, {root.kid: root.public_key}, at=NOW)


@pytest.fixture(scope="module")
def ingress(root: KeyPair, ingress_key: KeyPair) -> Certificate:
    return certify(root, ingress_key, ingress=True)


def mint(key: KeyPair, **kwargs: object) -> str:
    options: dict[str, object] = {
        "subject": "alice",
        "tenant": "acme",
        "scopes": ["kb:read", "billing:refund", "kb:read"],
        "ttl_s": HOUR,
        "now": NOW,
    }
    options.update(kwargs)
    return mint_token(key, **options)


def test_mint_and_verify(ingress_key: KeyPair, ingress: Certificate) -> None:
    token = mint(ingress_key)
    caller = verify_token(token, ingress, at=NOW + 60)
    assert isinstance(caller, Caller)
    assert caller.subject == "alice"
    assert caller.tenant == "acme"
    assert caller.scopes == frozenset({"kb:read", "billing:refund"})
    assert caller.expires == NOW + HOUR
    assert caller.issuer == "gateway"
    assert len(caller.token_id) == 26
    assert caller.has_scope("kb:read")
    assert not caller.has_scope("kb:write")


def test_header_names_the_ingress_key(ingress_key: KeyPair) -> None:
    token = mint(ingress_key)
    assert jwt.get_unverified_header(token) == {
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": ingress_key.kid,
    }
    assert token_key_id(token) == ingress_key.kid


def test_token_ids_are_unique(ingress_key: KeyPair, ingress: Certificate) -> None:
    first = verify_token(mint(ingress_key), ingress, at=NOW)
    second = verify_token(mint(ingress_key), ingress, at=NOW)
    assert first.token_id != second.token_id


def test_expired(ingress_key: KeyPair, ingress: Certificate) -> None:
    token = mint(ingress_key)
    with pytest.raises(ExpiredToken, match="expired") as info:
        verify_token(token, ingress, at=NOW + HOUR + 1)
    assert isinstance(info.value, InvalidToken)
    assert info.value.reason == "expired-token"


def test_not_yet_valid(ingress_key: KeyPair, ingress: Certificate) -> None:
    with pytest.raises(ExpiredToken, match="not valid"):
        verify_token(mint(ingress_key), ingress, at=NOW - 60)


def test_leeway(ingress_key: KeyPair, ingress: Certificate) -> None:
    token = mint(ingress_key)
    assert verify_token(token, ingress, at=NOW + HOUR + 4, leeway_s=5).subject == "alice"


def test_issuer_without_ingress_may_not_mint(root: KeyPair) -> None:
    agent = KeyPair.generate("billing")
    cert = certify(root, agent, ingress=False)
    with pytest.raises(InvalidToken, match="not an ingress") as info:
        verify_token(mint(agent), cert, at=NOW)
    assert not isinstance(info.value, ExpiredToken)


def test_forged_with_another_key(ingress_key: KeyPair, ingress: Certificate) -> None:
    forger = KeyPair("gateway", bytes(32))
    token = jwt.encode(
        jwt.decode(mint(ingress_key), options={"verify_signature": False}),
        forger.jwt_key(),
        algorithm="EdDSA",
        headers={"kid": ingress_key.kid},
    )
    assert token_key_id(token) == ingress_key.kid
    with pytest.raises(InvalidToken, match="rejected"):
        verify_token(token, ingress, at=NOW)


def test_widened_scopes_break_the_signature(ingress_key: KeyPair, ingress: Certificate) -> None:
    header, _, signature = mint(ingress_key).split(".")
    claims = {"sub": "alice", "scopes": ["*"], "iat": int(NOW), "exp": int(NOW + HOUR), "jti": "x"}
    payload = b64e(json.dumps(claims).encode())
    with pytest.raises(InvalidToken):
        verify_token(f"{header}.{payload}.{signature}", ingress, at=NOW)


def test_alg_none(ingress_key: KeyPair, ingress: Certificate) -> None:
    claims = jwt.decode(mint(ingress_key), options={"verify_signature": False})
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": ingress_key.kid})
    with pytest.raises(InvalidToken, match="EdDSA"):
        token_key_id(token)
    with pytest.raises(InvalidToken, match="rejected"):
        verify_token(token, ingress, at=NOW)


def test_missing_jti(ingress_key: KeyPair, ingress: Certificate) -> None:
    claims = {"sub": "alice", "iat": int(NOW), "exp": int(NOW + HOUR)}
    token = jwt.encode(
        claims, ingress_key.jwt_key(), algorithm="EdDSA", headers={"kid": ingress_key.kid}
    )
    with pytest.raises(InvalidToken, match="jti"):
        verify_token(token, ingress, at=NOW)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "eyJhbGciOiJFZERTQSJ9.e30.sig"])
def test_token_key_id_unreadable_or_without_kid(token: str) -> None:
    with pytest.raises(InvalidToken):
        token_key_id(token)


def test_token_key_id_requires_eddsa(ingress_key: KeyPair) -> None:
    token = jwt.encode({"sub": "alice"}, "s" * 32, algorithm="HS256", headers={"kid": "gw-1"})
    with pytest.raises(InvalidToken, match="EdDSA with a kid"):
        token_key_id(token)
    token = jwt.encode({"sub": "alice"}, ingress_key.jwt_key(), algorithm="EdDSA")
    with pytest.raises(InvalidToken, match="EdDSA with a kid"):
        token_key_id(token)
