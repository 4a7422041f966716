"""The batch scheme: one Ed25519 signature over a Merkle root, each message verifiable alone."""

from __future__ import annotations

import asyncio
import os

import pytest

from jetmesh import BadSignature
from jetmesh.addresses import Subjects
from jetmesh.envelope import encode_envelope
from jetmesh.identity import merkle
from jetmesh.identity.keys import KeyPair, b64d, b64e
from jetmesh.identity.signing import (
    PATH_HEADER,
    SCHEME_ED25519,
    SCHEME_HEADER,
    SCHEME_MERKLE,
    SIGNATURE_HEADER,
    BatchSigner,
    RootCache,
    Signer,
)
from jetmesh.identity.verifier import MSG_ID_HEADER, Verifier

TASK = "mesh.agent.billing.task"


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 64])
def test_every_leaf_leads_to_the_root(count: int) -> None:
    messages = [os.urandom(40) for _ in range(count)]
    root, paths = merkle.build(messages)
    for index, message in enumerate(messages):
        leaf = merkle.leaf_hash(message)
        assert merkle.root_from_path(leaf, index, count, paths[index]) == root


def test_a_changed_message_index_or_path_misses_the_root() -> None:
    messages = [os.urandom(40) for _ in range(7)]
    root, paths = merkle.build(messages)
    leaf = merkle.leaf_hash(messages[3])
    assert merkle.root_from_path(merkle.leaf_hash(messages[3] + b"!"), 3, 7, paths[3]) != root
    assert merkle.root_from_path(leaf, 2, 7, paths[3]) != root
    assert merkle.root_from_path(leaf, 3, 7, paths[3][:-1]) is None  # too short
    assert merkle.root_from_path(leaf, 3, 7, [*paths[3], b"\0" * 32]) is None  # too long
    assert merkle.root_from_path(leaf, 7, 7, paths[3]) is None  # index out of range


async def _batch(key: KeyPair, datas: list[bytes]) -> list[dict[str, str]]:
    signer = BatchSigner(Signer(key))
    futures = [signer.sign(d) for d in datas]  # same loop turn: one batch
    headers = list(await asyncio.gather(*futures))
    assert signer.batches == 1
    assert signer.messages == len(datas)
    return headers


async def test_messages_sealed_together_share_one_signature() -> None:
    key = KeyPair.generate("billing")
    datas = [os.urandom(100) for _ in range(5)]
    headers = await _batch(key, datas)
    assert {h[SCHEME_HEADER] for h in headers} == {SCHEME_MERKLE}
    assert len({h[SIGNATURE_HEADER] for h in headers}) == 1
    cache = RootCache()
    public = key.signing_key().verify_key
    for data, h in zip(datas, headers, strict=True):
        assert cache.merkle_valid(key.kid, public, data, h[SIGNATURE_HEADER], h[PATH_HEADER])
    # body swapped between two messages of one batch: each path binds its own bytes
    assert not cache.merkle_valid(
        key.kid, public, datas[0], headers[1][SIGNATURE_HEADER], headers[1][PATH_HEADER]
    )


async def test_a_batch_of_one_uses_plain_ed25519() -> None:
    key = KeyPair.generate("billing")
    (headers,) = await _batch(key, [b"alone"])
    assert headers[SCHEME_HEADER] == SCHEME_ED25519
    assert PATH_HEADER not in headers


async def test_root_signature_by_another_key_or_flipped_is_refused() -> None:
    key, other = KeyPair.generate("billing"), KeyPair.generate("billing")
    datas = [b"one", b"two", b"three"]
    headers = await _batch(key, datas)
    h = headers[2]
    sig = bytearray(b64d(h[SIGNATURE_HEADER]))
    sig[5] ^= 0x01
    cache = RootCache()
    public = key.signing_key().verify_key
    assert not cache.merkle_valid(key.kid, public, datas[2], b64e(bytes(sig)), h[PATH_HEADER])
    assert not cache.merkle_valid(
        other.kid, other.signing_key().verify_key, datas[2], h[SIGNATURE_HEADER], h[PATH_HEADER]
    )
    for bad_path in ("", "x/3/", "2/3/%%%", "2/999999/", "2/3/" + b64e(b"\0" * 31)):
        assert not cache.merkle_valid(key.kid, public, datas[2], h[SIGNATURE_HEADER], bad_path)


async def test_verifier_accepts_batch_signed_messages_and_refuses_a_swapped_body(
    pki, gateway, billing, token, envelope, chain
) -> None:
    verifier = Verifier(
        pki.trust(leeway_s=5.0),
        Subjects("mesh"),
        max_payload_bytes=1 << 20,
        max_age_s=110.0,
        clock_skew_s=5.0,
    )
    envs = [
        chain(envelope(sender="billing", to="billing", caller=token), gateway, billing)
        for _ in range(3)
    ]
    datas = [encode_envelope(e) for e in envs]
    headers = await _batch(billing, datas)
    for env, data, h in zip(envs, datas, headers, strict=True):
        h[MSG_ID_HEADER] = env.id
        verified = await verifier.verify(TASK, data, h, stored_at=env.created)
        assert verified.envelope.id == env.id
    with pytest.raises(BadSignature):
        await verifier.verify(TASK, datas[0], headers[1], stored_at=envs[0].created)
