"""Agent certificates: issued by the root, verified against trusted roots, at a chosen time."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from jetmesh import ExpiredKey, Subjects, UntrustedCertificate
from jetmesh.identity.certificates import (
    CERT_TYP,
    default_permissions,
    issue_certificate,
    verify_certificate,
)
from jetmesh.identity.keys import KeyPair, b64e
from jetmesh.identity.tokens import mint_token

NOW = 1_764_000_000.0
DAY = 86_400.0


@pytest.fixture(scope="module")
def root() -> KeyPair:
    return KeyPair.generate("root")


@pytest.fixture(scope="module")
def agent() -> KeyPair:
    return KeyPair.generate("billing")


@pytest.fixture(scope="module")
def roots(root: KeyPair) -> dict[str, bytes]:
    return {root.kid: root.public_key}


def issue(root: KeyPair, agent: KeyPair, **kwargs: object) -> str:
    options: dict[str, object] = {
        "publish": ["mesh.agent.*.task"],
        "subscribe": ["mesh.agent.billing.task"],
        "scopes": ["kb:read", "billing:refund", "kb:read"],
        "ttl_s": DAY,
        "now": NOW,
    }
    options.update(kwargs)
    return issue_certificate(root, agent, **options)


def part(token: str, index: int) -> dict[str, object]:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_issue_and_verify(root: KeyPair, agent: KeyPair, roots: dict[str, bytes]) -> None:
    token = issue(root, agent, ingress=True)
    cert = verify_certificate(token, roots, at=NOW + 10)
    assert cert.name == "billing"
    assert cert.kid == agent.kid
    assert cert.public_key == agent.public_key
    assert cert.issuer == root.kid
    assert cert.publish == ("mesh.agent.*.task",)
    assert cert.subscribe == ("mesh.agent.billing.task",)
    assert cert.scopes == frozenset({"kb:read", "billing:refund"})
    assert cert.ingress is True
    assert (cert.issued, cert.expires) == (NOW, NOW + DAY)
    assert cert.token == token
    assert cert.may_publish("mesh.agent.kb.task")
    assert not cert.may_publish("mesh.event.w.completed")


def test_header_and_claims_on_the_wire(root: KeyPair, agent: KeyPair) -> None:
    token = issue(root, agent)
    assert part(token, 0) == {"alg": "EdDSA", "typ": CERT_TYP, "kid": root.kid}
    claims = part(token, 1)
    assert claims["scopes"] == ["billing:refund", "kb:read"]
    assert claims["pub"] == b64e(agent.public_key)
    assert claims["nbf"] == claims["iat"] == int(NOW)


def test_wrong_root_is_untrusted(agent: KeyPair, roots: dict[str, bytes]) -> None:
    impostor = KeyPair.generate("root")
    with pytest.raises(UntrustedCertificate, match="not a trusted root"):
        verify_certificate(issue(impostor, agent), roots, at=NOW)


def test_root_kid_with_another_key_is_untrusted(root: KeyPair, agent: KeyPair) -> None:
    impostor = KeyPair.generate("root")
    token = issue(impostor, agent)
    forged = jwt.encode(
        part(token, 1),
        impostor.jwt_key(),
        algorithm="EdDSA",
        headers={"kid": root.kid, "typ": CERT_TYP},
    )
    with pytest.raises(UntrustedCertificate, match="rejected"):
        verify_certificate(forged, {root.kid: root.public_key}, at=NOW)


def test_expired(root: KeyPair, agent: KeyPair, roots: dict[str, bytes]) -> None:
    token = issue(root, agent)
    with pytest.raises(ExpiredKey, match="expired"):
        verify_certificate(token, roots, at=NOW + DAY + 1)
    with pytest.raises(ExpiredKey):
        verify_certificate(token, roots)  # NOW is long past


def test_leeway_covers_small_skew(root: KeyPair, agent: KeyPair, roots: dict[str, bytes]) -> None:
    token = issue(root, agent)
    assert verify_certificate(token, roots, at=NOW + DAY + 4, leeway_s=5).name == "billing"
    assert verify_certificate(token, roots, at=NOW - 4, leeway_s=5).name == "billing"


def test_not_yet_valid(root: KeyPair, agent: KeyPair, roots: dict[str, bytes]) -> None:
    token = issue(root, agent, now=time.time() + 3600)
    with pytest.raises(ExpiredKey, match="not valid for another"):
        verify_certificate(token, roots)


def test_at_parameter_judges_validity_then(
    root: KeyPair, agent: KeyPair, roots: dict[str, bytes]
) -> None:
    token = issue(root, agent)
    assert verify_certificate(token, roots, at=NOW).kid == agent.kid
    assert verify_certificate(token, roots, at=NOW + DAY - 1).kid == agent.kid
    with pytest.raises(ExpiredKey):
        verify_certificate(token, roots, at=NOW - 60)


def test_alg_none_is_untrusted(root: KeyPair, agent: KeyPair, roots: dict[str, bytes]) -> None:
    claims = part(issue(root, agent), 1)
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": root.kid, "typ": CERT_TYP})
    with pytest.raises(UntrustedCertificate):
        verify_certificate(token, roots, at=NOW)


def test_hs256_with_public_key_as_secret_is_untrusted(
    root: KeyPair, agent: KeyPair, roots: dict[str, bytes]
) -> None:
    claims = part(issue(root, agent), 1)
    token = jwt.encode(
        claims, root.public_key, algorithm="HS256", headers={"kid": root.kid, "typ": CERT_TYP}
    )
    with pytest.raises(UntrustedCertificate):
        verify_certificate(token, roots, at=NOW)


def test_caller_token_signed_by_root_is_not_a_certificate(
    root: KeyPair, roots: dict[str, bytes]
) -> None:
    token = mint_token(root, subject="billing", tenant="t", scopes=[], ttl_s=DAY, now=NOW)
    with pytest.raises(UntrustedCertificate):
        verify_certificate(token, roots, at=NOW)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("sub", "admin"), ("scopes", ["*"]), ("ingress", True), ("publish", [">"]), ("exp", 4e9)],
)
def test_tampered_payload_is_untrusted(
    root: KeyPair, agent: KeyPair, roots: dict[str, bytes], claim: str, value: object
) -> None:
    token = issue(root, agent)
    header, payload, signature = token.split(".")
    claims = part(token, 1) | {claim: value}
    tampered_payload = b64e(json.dumps(claims).encode())
    assert tampered_payload != payload
    with pytest.raises(UntrustedCertificate, match="rejected"):
        verify_certificate(f"{header}.{tampered_payload}.{signature}", roots, at=NOW)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b"])
def test_unreadable_is_untrusted(roots: dict[str, bytes], token: str) -> None:
    with pytest.raises(UntrustedCertificate):
        verify_certificate(token, roots, at=NOW)


def test_missing_required_claim_is_untrusted(root: KeyPair, roots: dict[str, bytes]) -> None:
    claims = {"iss": root.kid, "sub": "billing", "iat": int(NOW), "exp": int(NOW + DAY)}
    token = jwt.encode(
        claims, root.jwt_key(), algorithm="EdDSA", headers={"kid": root.kid, "typ": CERT_TYP}
    )
    with pytest.raises(UntrustedCertificate, match=r"kid|pub"):
        verify_certificate(token, roots, at=NOW)


def test_default_permissions() -> None:
    publish, subscribe = default_permissions(Subjects("acme"), "billing")
    assert publish == [
        "acme.agent.*.task",
        "acme.agent.*.reply.*",
        "acme.event.>",
        "acme.dlq.billing",
    ]
    assert subscribe == ["acme.agent.billing.task", "acme.agent.billing.reply.*"]
