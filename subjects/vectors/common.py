"""What the conformance vectors share: fixed keys and times, certificates, caller tokens,
signed messages, the Merkle scheme computed from its definition, and a file's header."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import jwt
import msgspec

from jetmesh.envelope import Envelope, encode
from jetmesh.identity import (
    KEY_HEADER,
    MSG_ID_HEADER,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    KeyPair,
    Revocation,
)

VECTORS_DIR: Final = Path(__file__).resolve().parent
HINT: Final = "run `make schemas` (python -m subjects.vectors) and commit the result"
NOW: Final = 1_764_000_000
PREFIX: Final = "mesh"
LIMITS: Final = {
    "max_payload_bytes": 16384,
    "max_age_s": 300,
    "clock_skew_s": 5,
    "leeway_s": 5,
    "max_call_depth": 8,
}
WORKFLOW: Final = "01JD0000000000000000000000"
MERKLE_DOMAIN: Final = b"jetmesh/merkle/v1\x00"
SCHEME_ED25519: Final = "ed25519"
SCHEME_MERKLE: Final = "ed25519-merkle-sha256"
CERT_TYP: Final = "jetmesh-cert+jwt"

Case = dict[str, Any]


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seed(label: str) -> bytes:
    """A fixed 32-byte seed named by ``label`` (written in the files, not derived there)."""
    return hashlib.sha256(b"jetmesh/vectors/" + label.encode()).digest()


ROOT: Final = KeyPair("root", seed("root"))
OTHER_ROOT: Final = KeyPair("root", seed("other-root"))
BILLING: Final = KeyPair("billing", seed("billing"))
KB: Final = KeyPair("kb", seed("kb"))
STRAY: Final = KeyPair("stray", seed("stray"))
"""Certified by a root that is not trusted."""
OLD: Final = KeyPair("old", seed("old"))
"""Its certificate expired before ``now``."""
UNREGISTERED: Final = KeyPair("ghost", seed("ghost"))
GATEWAY: Final = KeyPair("gateway", seed("gateway"))
"""An ingress: it may mint caller tokens."""
REVOKED: Final = KeyPair("revoked", seed("revoked"))
"""Certified, and revoked before ``now`` (``revoked.<kid>`` in the registry)."""


def ulid(n: int) -> str:
    return f"01JD{n:022d}"


def certificate(
    agent: KeyPair,
    *,
    root: KeyPair = ROOT,
    ingress: bool = False,
    iat: int = NOW - 3600,
    ttl_s: int = 86_400,
    n: int = 0,
) -> str:
    """A certificate JWT with the claims ``jetmesh.identity.issue_certificate`` writes."""
    p = PREFIX
    claims = {
        "iss": root.kid,
        "sub": agent.owner,
        "kid": agent.kid,
        "pub": b64e(agent.public_key),
        "publish": [
            f"{p}.agent.*.task",
            f"{p}.agent.*.reply.*",
            f"{p}.event.>",
            f"{p}.dlq.{agent.owner}",
        ],
        "subscribe": [f"{p}.agent.{agent.owner}.task", f"{p}.agent.{agent.owner}.reply.*"],
        "scopes": [],
        "ingress": ingress,
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl_s,
        "jti": ulid(900 + n),
    }
    headers = {"kid": root.kid, "typ": CERT_TYP}
    return jwt.encode(claims, root.jwt_key(), algorithm="EdDSA", headers=headers)


def revocation(key: KeyPair, *, at: int = NOW - 60) -> str:
    """The registry's value under ``revoked.<kid>``: the record ``jetmesh keys revoke``
    writes, as JSON text."""
    record = Revocation(kid=key.kid, at=float(at), by="ops", reason="key leaked")
    return msgspec.json.encode(record).decode()


def caller_token(
    issuer: KeyPair,
    *,
    signer: KeyPair | None = None,
    iat: int = NOW - 60,
    ttl_s: int = 3600,
    n: int = 0,
    scopes: Sequence[str] = ("kb:read",),
) -> str:
    """A caller token with the claims ``jetmesh.identity.mint_token`` writes."""
    claims = {
        "iss": issuer.owner,
        "sub": "alice",
        "tenant": "acme",
        "scopes": sorted(set(scopes)),
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl_s,
        "jti": ulid(800 + n),
    }
    key = (signer or issuer).jwt_key()
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": issuer.kid})


def event(n: int, *, sender: str = "billing", **fields: Any) -> bytes:
    """The exact bytes of an event envelope, as jetmesh encodes it."""
    values: dict[str, Any] = {
        "id": ulid(n),
        "kind": "event",
        "workflow": WORKFLOW,
        "sender": sender,
        "to": "events",
        "created": float(NOW - 1),
    }
    values.update(fields)
    return encode(Envelope(**values))


EVENT_SUBJECT: Final = f"{PREFIX}.event.{WORKFLOW}.note"


def signed(data: bytes, key: KeyPair, msg_id: str) -> dict[str, str]:
    return {
        MSG_ID_HEADER: msg_id,
        SCHEME_HEADER: SCHEME_ED25519,
        KEY_HEADER: key.kid,
        SIGNATURE_HEADER: b64e(key.signing_key().sign(data).signature),
    }


def case(
    name: str,
    data: bytes,
    headers: dict[str, str],
    reason: str | None,
    *,
    subject: str = EVENT_SUBJECT,
    note: str = "",
) -> Case:
    return {
        "name": name,
        "note": note,
        "subject": subject,
        "headers": headers,
        "message": data.decode("utf-8"),
        "verdict": "accept" if reason is None else "reject",
        "reason": reason,
    }


def _leaf(message: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + message).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle(messages: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """Root and sibling paths (leaf first); an odd last node is carried up unchanged."""
    level = [_leaf(m) for m in messages]
    paths: list[list[bytes]] = [[] for _ in messages]
    positions = list(range(len(messages)))
    while len(level) > 1:
        for i, pos in enumerate(positions):
            if pos ^ 1 < len(level):
                paths[i].append(level[pos ^ 1])
        nxt = [_node(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        positions = [p // 2 for p in positions]
    return level[0], paths


def file_header(keys: Sequence[KeyPair], registry: dict[str, str]) -> dict[str, Any]:
    return {
        "now": NOW,
        "prefix": PREFIX,
        "limits": LIMITS,
        "roots": {ROOT.kid: b64e(ROOT.public_key)},
        "keys": {
            k.owner: {"seed": b64e(k.seed), "public_key": b64e(k.public_key), "kid": k.kid}
            for k in keys
        },
        "registry": registry,
    }
