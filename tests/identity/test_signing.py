"""Detached Ed25519 signatures in headers; libsodium and `cryptography` agree byte for byte."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.signing import VerifyKey

from jetmesh.identity.keys import KeyPair, b64d, b64e, key_id
from jetmesh.identity.signing import (
    KEY_HEADER,
    KNOWN_SCHEMES,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    Signer,
    signature_valid,
)

DATA = b'{"id":"01J","kind":"task","body":{"text":"hello"}}'


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return KeyPair("billing", bytes(range(32)))


@pytest.fixture(scope="module")
def public(key: KeyPair) -> VerifyKey:
    return VerifyKey(key.public_key)


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def test_headers(key: KeyPair) -> None:
    headers = Signer(key).headers(DATA)
    assert set(headers) == {SCHEME_HEADER, KEY_HEADER, SIGNATURE_HEADER}
    assert headers[SCHEME_HEADER] == "ed25519"
    assert headers[SCHEME_HEADER] in KNOWN_SCHEMES
    assert headers[KEY_HEADER] == key.kid == key_id("billing", key.public_key)
    assert headers[KEY_HEADER].startswith("billing-")
    signature = headers[SIGNATURE_HEADER]
    assert "=" not in signature
    assert len(signature) == 86
    assert len(b64d(signature)) == 64


def test_signatures_are_deterministic_and_cover_the_data(key: KeyPair) -> None:
    signer = Signer(key)
    assert signer.headers(DATA) == signer.headers(DATA)
    assert signer.headers(DATA)[SIGNATURE_HEADER] != signer.headers(DATA + b" ")[SIGNATURE_HEADER]


def test_valid_signature(key: KeyPair, public: VerifyKey) -> None:
    assert signature_valid(public, DATA, Signer(key).headers(DATA)[SIGNATURE_HEADER])


@pytest.mark.parametrize("index", [0, len(DATA) // 2, len(DATA) - 1])
def test_one_flipped_bit_in_data_fails(key: KeyPair, public: VerifyKey, index: int) -> None:
    signature = Signer(key).headers(DATA)[SIGNATURE_HEADER]
    assert not signature_valid(public, flip_bit(DATA, index), signature)


@pytest.mark.parametrize(("index", "bit"), [(0, 0), (31, 7), (32, 0), (63, 6)])
def test_one_flipped_bit_in_signature_fails(
    key: KeyPair, public: VerifyKey, index: int, bit: int
) -> None:
    raw = b64d(Signer(key).headers(DATA)[SIGNATURE_HEADER])
    assert not signature_valid(public, DATA, b64e(flip_bit(raw, index, bit)))


def test_wrong_key_fails(key: KeyPair) -> None:
    other = VerifyKey(KeyPair.generate("billing").public_key)
    assert not signature_valid(other, DATA, Signer(key).headers(DATA)[SIGNATURE_HEADER])


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param("!!!not base64!!!", id="not-base64"),
        pytest.param("A", id="one-char"),
        pytest.param("é" * 86, id="non-ascii"),
    ],
)
def test_bad_base64_fails(public: VerifyKey, signature: str) -> None:
    assert not signature_valid(public, DATA, signature)


@pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
def test_wrong_length_fails(key: KeyPair, public: VerifyKey, length: int) -> None:
    raw = b64d(Signer(key).headers(DATA)[SIGNATURE_HEADER])
    resized = (raw * 2)[:length]
    assert not signature_valid(public, DATA, b64e(resized))


def test_cryptography_signature_verifies_with_nacl(key: KeyPair, public: VerifyKey) -> None:
    signature = Ed25519PrivateKey.from_private_bytes(key.seed).sign(DATA)
    assert signature_valid(public, DATA, b64e(signature))
    assert b64e(signature) == Signer(key).headers(DATA)[SIGNATURE_HEADER]


def test_nacl_signature_verifies_with_cryptography(key: KeyPair) -> None:
    signature = b64d(Signer(key).headers(DATA)[SIGNATURE_HEADER])
    verifier = Ed25519PublicKey.from_public_bytes(key.public_key)
    verifier.verify(signature, DATA)
    with pytest.raises(InvalidSignature):
        verifier.verify(signature, flip_bit(DATA, 3))


def test_key_pair_views_agree(key: KeyPair) -> None:
    raw = key.jwt_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert raw == key.public_key == bytes(key.signing_key().verify_key)
