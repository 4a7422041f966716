"""Strict base64url and compact JWS: one text per byte string, so no token, certificate or
link can be re-spelled under a valid signature (and change its digest)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from jetmesh import InvalidToken, UntrustedCertificate
from jetmesh.identity.certificates import issue_certificate, verify_certificate
from jetmesh.identity.jws import b64d, b64e, check_jws, jws_parts
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.tokens import mint_token, token_key_id, verify_token

NOW = 1_764_000_000.0


def lenient(text: str) -> bytes:
    """What a lenient decoder (and jetmesh before) reads: padding added, ``+/`` taken."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def stray_bits(text: str) -> str:
    """``text`` with a low bit set in its last character: the same bytes, leniently."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(text) % 4 in (2, 3)
    return text[:-1] + alphabet[alphabet.index(text[-1]) | 1]


@pytest.mark.parametrize("size", range(0, 70))
def test_every_length_round_trips(size: int) -> None:
    data = bytes(range(256))[:size]
    assert b64d(b64e(data)) == data


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("AA==", "outside the alphabet"),  # padding
        ("AAA=", "outside the alphabet"),
        ("+/8", "outside the alphabet"),  # the standard alphabet's 62 and 63
        ("A B", "outside the alphabet"),
        ("AA\n", "outside the alphabet"),
        ("\u0410A", "outside the alphabet"),  # a Cyrillic A
        ("A", "impossible length"),
        ("AAAAA", "impossible length"),
        ("AB", "stray bits"),  # b"\x00" is "AA"
        ("AAB", "stray bits"),  # b"\x00\x00" is "AAA"
    ],
)
def test_a_text_that_is_not_the_one_encoding_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        b64d(text)


def test_stray_bits_decode_to_the_same_bytes_leniently() -> None:
    """The case that made a link's digest change under a valid signature."""
    text = b64e(b"\xff\xfe")
    assert lenient(stray_bits(text)) == lenient(text) == b"\xff\xfe"
    with pytest.raises(ValueError, match="stray bits"):
        b64d(stray_bits(text))


def test_a_compact_jws_has_three_parts() -> None:
    with pytest.raises(ValueError, match="3 parts"):
        jws_parts("e30.e30")
    header, payload, signature = jws_parts(f"{b64e(b'{}')}.{b64e(b'[]')}.AA")
    assert (header, payload, signature) == (b"{}", b"[]", b"\x00")


@pytest.mark.parametrize(
    ("header", "payload", "match"),
    [
        (b'{"alg":"EdDSA","alg":"none"}', b"{}", "header names 'alg' twice"),
        (b'{"alg":"EdDSA"}', b'{"sub":"alice","sub":"mallory"}', "claims names 'sub' twice"),
        (b'{"alg":"EdDSA"}', b'{"sub":"alice","\\u0073ub":"mallory"}', "claims names 'sub'"),
        (b"[]", b"{}", "header is not a JSON object"),
    ],
)
def test_a_jws_naming_a_member_twice_is_refused(header: bytes, payload: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_jws(f"{b64e(header)}.{b64e(payload)}.AA")


@pytest.fixture(scope="module")
def gateway() -> KeyPair:
    return KeyPair.generate("gateway")


@pytest.fixture(scope="module")
def root() -> KeyPair:
    return KeyPair.generate("root")


def respelled(token: str, how: str) -> str:
    """``token`` with its signature part spelled another way that decodes leniently to
    the same bytes."""
    header, payload, signature = token.split(".")
    if how == "padded":
        signature += "=="  # a 64-byte signature is 86 characters: 2 short of a quantum
    elif how == "stray bits":
        signature = stray_bits(signature)
    assert lenient(signature) == lenient(token.split(".")[2])
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize("how", ["padded", "stray bits"])
def test_a_respelled_caller_token_is_invalid(root: KeyPair, gateway: KeyPair, how: str) -> None:
    issuer = verify_certificate(
        issue_certificate(root, gateway, publish=[], subscribe=[], ingress=True, ttl_s=3600),
        {root.kid: root.public_key},
    )
    token = mint_token(gateway, subject="alice", tenant="acme", scopes=[], ttl_s=600)
    assert verify_token(token, issuer).subject == "alice"
    forged = respelled(token, how)
    if how == "padded":  # PyJWT alone takes this one (it allows padding): the check is ours
        assert jwt.decode(forged, options={"verify_signature": False})["sub"] == "alice"
    with pytest.raises(InvalidToken, match="caller token unreadable"):
        token_key_id(forged)
    with pytest.raises(InvalidToken, match="caller token rejected"):
        verify_token(forged, issuer)


def test_a_caller_token_naming_a_claim_twice_is_invalid(root: KeyPair, gateway: KeyPair) -> None:
    issuer = verify_certificate(
        issue_certificate(root, gateway, publish=[], subscribe=[], ingress=True, ttl_s=3600),
        {root.kid: root.public_key},
    )
    claims = json.dumps({"sub": "alice", "iat": 1, "exp": 2e9, "jti": "j", "iss": "gateway"})
    payload = claims[:-1] + ', "sub": "mallory"}'
    header = json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": gateway.kid})
    signing_input = f"{b64e(header.encode())}.{b64e(payload.encode())}"
    signature = gateway.signing_key().sign(signing_input.encode()).signature
    token = f"{signing_input}.{b64e(signature)}"
    with pytest.raises(InvalidToken, match="names 'sub' twice"):
        verify_token(token, issuer)


@pytest.mark.parametrize("how", ["padded", "stray bits"])
def test_a_respelled_certificate_is_untrusted(root: KeyPair, how: str) -> None:
    agent = KeyPair.generate("billing")
    cert = issue_certificate(root, agent, publish=[], subscribe=[], ttl_s=3600)
    roots = {root.kid: root.public_key}
    assert verify_certificate(cert, roots).kid == agent.kid
    with pytest.raises(UntrustedCertificate, match="unreadable certificate"):
        verify_certificate(respelled(cert, how), roots)
