"""subjects/README.md's worked example is a correct test vector for other languages."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from jetmesh.addresses import Subjects
from jetmesh.bus.tracing import trace_id_of
from jetmesh.envelope import decode_body, decode_envelope
from jetmesh.identity.certificates import Certificate
from jetmesh.identity.keys import KeyPair, b64d
from jetmesh.identity.signing import Signer
from jetmesh.identity.tokens import token_key_id, verify_token
from services.support.wire import Ticket
from subjects.catalogue import mesh_type
from subjects.identity import CallerTokenClaims

README = Path(__file__).resolve().parents[2] / "subjects" / "README.md"


@pytest.fixture(scope="module")
def vector() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    fields = dict(
        re.findall(
            r"^(seed \(base64url\)|Mesh-Key|Mesh-Sig|bytes|traceparent|subject): (.+)$",
            text,
            re.MULTILINE,
        )
    )
    assert len(fields) == 6, f"README example lines not found: {sorted(fields)}"
    return fields


@pytest.fixture(scope="module")
def key(vector: dict[str, str]) -> KeyPair:
    return KeyPair("acme-ingest", b64d(vector["seed (base64url)"]))


def test_signature_and_key_id(vector: dict[str, str], key: KeyPair) -> None:
    headers = Signer(key).headers(vector["bytes"].encode())
    assert headers["Mesh-Key"] == vector["Mesh-Key"]
    assert headers["Mesh-Sig"] == vector["Mesh-Sig"]
    assert headers["Mesh-Sig-Scheme"] == "ed25519"


def test_envelope_is_addressed_to_the_subject(vector: dict[str, str]) -> None:
    env = decode_envelope(vector["bytes"].encode())
    assert env.kind == "task"
    assert env.sender == "acme-ingest"
    assert Subjects().task(env.to) == vector["subject"]
    assert env.type == mesh_type(Ticket)
    assert decode_body(env, Ticket).customer == "alice"
    assert vector["traceparent"].startswith(f"00-{trace_id_of(env.workflow)}-")


def test_caller_token_is_valid_and_matches_its_schema(vector: dict[str, str], key: KeyPair) -> None:
    env = decode_envelope(vector["bytes"].encode())
    assert token_key_id(env.caller) == key.kid
    ingress = Certificate(
        name=key.owner,
        kid=key.kid,
        public_key=key.public_key,
        issuer="root",
        publish=(),
        subscribe=(),
        scopes=frozenset(),
        ingress=True,
        issued=0,
        expires=2e9,
        token="",
    )
    claims = msgspec.json.decode(b64d(env.caller.split(".")[1]), type=CallerTokenClaims)
    caller = verify_token(env.caller, ingress, at=claims.iat + 1)
    assert (caller.subject, caller.tenant) == (claims.sub, claims.tenant)
