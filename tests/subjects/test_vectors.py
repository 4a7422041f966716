"""The conformance vectors in subjects/vectors/ are current, and jetmesh's own verifier gives
every case's verdict and reason."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest

from jetmesh._exceptions import RejectedMessage
from jetmesh.addresses import Subjects
from jetmesh.calls import PendingCalls
from jetmesh.envelope import Envelope
from jetmesh.identity import (
    KeyPair,
    Revocation,
    TrustStore,
    Verifier,
    issue_certificate,
    merkle,
    mint_token,
)
from jetmesh.identity.delegation import mint_link
from subjects import vectors

FILES = sorted(vectors.VECTORS_DIR.glob("*.json"))


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


CASES = [
    pytest.param(path.name, case, id=f"{path.stem}:{case['name']}")
    for path in FILES
    for case in load(path)["cases"]
]


def verdict(spec: dict[str, Any], case: dict[str, Any]) -> tuple[str, str | None]:
    """What jetmesh's Verifier says about one case: a fresh trust store and verifier each
    time (no cache or seen-set carried between cases), judged at the file's ``now``: as a
    stored message read back (``audit``), so freshness, certificates, tokens and links are
    judged at ``stored_at`` rather than the wall clock."""
    registry: dict[str, str] = spec["registry"]

    async def lookup(kid: str) -> str | None:
        return registry.get(kid)

    async def revocations(kid: str) -> Revocation | None:
        record = registry.get(f"revoked.{kid}")
        return None if record is None else msgspec.json.decode(record, type=Revocation)

    limits = spec["limits"]
    roots = {kid: b64d(pub) for kid, pub in spec["roots"].items()}
    trust = TrustStore(roots, lookup, leeway_s=limits["leeway_s"], revocations=revocations)
    verifier = Verifier(
        trust,
        Subjects(spec["prefix"]),
        max_payload_bytes=limits["max_payload_bytes"],
        max_age_s=limits["max_age_s"],
        clock_skew_s=limits["clock_skew_s"],
        max_call_depth=limits["max_call_depth"],
    )
    data = case["message"].encode("utf-8")

    async def receive() -> None:
        verified = await verifier.verify(
            case["subject"], data, case["headers"], stored_at=spec["now"], audit=True
        )
        if "call" in case:  # a reply to a call the receiver waits on
            call = case["call"]
            pending = PendingCalls()
            pending.expect(
                Envelope(
                    id=call["id"],
                    kind="task",
                    workflow=call["workflow"],
                    sender=verified.envelope.to,
                    to=call["to"],
                    created=spec["now"],
                    step=call["step"],
                )
            )
            assert pending.resolve(verified.envelope, verified.certificate.name)

    try:
        asyncio.run(receive())
    except RejectedMessage as exc:
        return "reject", exc.reason
    return "accept", None


def test_the_vector_files_are_current() -> None:
    assert [p.name for p in FILES] == sorted(vectors.render())
    assert vectors.problems() == []


def test_a_stale_vector_file_is_reported(tmp_path: Path) -> None:
    for name, content in vectors.render().items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    (tmp_path / "tokens.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "extra.json").write_text("{}\n", encoding="utf-8")
    assert vectors.main(["--check", "--dir", str(tmp_path)]) == 1
    assert vectors.problems(tmp_path) == [
        "stale:   vectors/tokens.json",
        "extra:   vectors/extra.json",
    ]


@pytest.mark.parametrize(("file", "case"), CASES)
def test_jetmesh_gives_each_case_its_verdict_and_reason(file: str, case: dict[str, Any]) -> None:
    spec = load(vectors.VECTORS_DIR / file)
    assert verdict(spec, case) == (case["verdict"], case["reason"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_file_is_self_contained(path: Path) -> None:
    spec = load(path)
    assert isinstance(spec["now"], int)
    for owner, key in spec["keys"].items():
        pair = KeyPair(owner, b64d(key["seed"]))
        assert len(pair.seed) == 32
        assert key["public_key"] == base64.urlsafe_b64encode(pair.public_key).rstrip(b"=").decode()
        assert key["kid"] == pair.kid
    verdicts = {case["verdict"] for case in spec["cases"]}
    assert verdicts == {"accept", "reject"}
    names = [case["name"] for case in spec["cases"]]
    assert len(names) == len(set(names))


def test_the_generator_builds_jwts_and_links_as_jetmesh_mints_them() -> None:
    key = vectors.GATEWAY
    minted = mint_link(
        key,
        to="triage",
        workflow=vectors.WORKFLOW,
        step="triage",
        scopes=["b", "a"],
        expires=vectors.NOW + 1800,
        prev="p",
        now=vectors.NOW - 30,
    )
    assert vectors.link(key, to="triage", step="triage", scopes=["a", "b"], prev="p") == minted
    token = mint_token(key, subject="alice", tenant="acme", scopes=["kb:read"], ttl_s=60)
    ours = vectors.caller_token(key)
    assert set(jwt.decode(ours, options={"verify_signature": False})) == set(
        jwt.decode(token, options={"verify_signature": False})
    )
    assert jwt.get_unverified_header(ours) == jwt.get_unverified_header(token)
    cert = issue_certificate(vectors.ROOT, key, publish=[], subscribe=[], ttl_s=60)
    ours = vectors.certificate(key)
    assert set(jwt.decode(ours, options={"verify_signature": False})) == set(
        jwt.decode(cert, options={"verify_signature": False})
    )
    assert jwt.get_unverified_header(ours) == jwt.get_unverified_header(cert)


@pytest.mark.parametrize("count", range(1, 10))
def test_the_generators_merkle_tree_is_jetmeshs(count: int) -> None:
    messages = [bytes([i]) * (i + 1) for i in range(count)]
    assert vectors.merkle(messages) == merkle.build(messages)
