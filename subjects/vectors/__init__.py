"""Conformance vectors: messages with the verdict and reason code a receiver must give.

Usage::

    python -m subjects.vectors            # write subjects/vectors/*.json
    python -m subjects.vectors --check    # exit 1 listing stale, missing or extra files

Every key comes from a fixed seed and every time from the file's ``now``, so the files are
the same on every run (Ed25519 signatures are deterministic). The JWTs are built here claim
for claim as jetmesh mints them, with fixed ``jti``; the Merkle paths are computed here from
the scheme's definition, independently of jetmesh's own tree code.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import jwt
import msgspec

from jetmesh.envelope import Envelope, encode
from jetmesh.identity import (
    KEY_HEADER,
    MSG_ID_HEADER,
    PATH_HEADER,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    KeyPair,
)

VECTORS_DIR: Final = Path(__file__).resolve().parent
HINT: Final = "run `make schemas` (python -m subjects.vectors) and commit the result"
NOW: Final = 1_764_000_000
PREFIX: Final = "mesh"
LIMITS: Final = {"max_payload_bytes": 4096, "max_age_s": 300, "clock_skew_s": 5, "leeway_s": 5}
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


def _header(keys: Sequence[KeyPair], registry: dict[str, str]) -> dict[str, Any]:
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


def signatures() -> dict[str, Any]:
    registry = {
        BILLING.kid: certificate(BILLING, n=1),
        KB.kid: certificate(KB, n=2),
        STRAY.kid: certificate(STRAY, root=OTHER_ROOT, n=3),
        OLD.kid: certificate(OLD, iat=NOW - 10 * 86_400, n=4),
    }
    cases: list[Case] = []
    data = event(1)
    cases.append(case("plain-valid", data, signed(data, BILLING, ulid(1)), None))
    flipped = data.replace(b'"kind":"event"', b'"kind":"evenT"')
    cases.append(
        case(
            "plain-flipped-byte",
            flipped,
            signed(data, BILLING, ulid(1)),
            "bad-signature",
            note="one byte of the signed message changed after signing",
        )
    )
    wrong_kid = signed(data, BILLING, ulid(1)) | {KEY_HEADER: KB.kid}
    cases.append(
        case(
            "plain-wrong-key-id",
            data,
            wrong_kid,
            "bad-signature",
            note="signed by billing, Mesh-Key names kb's (registered) key",
        )
    )
    unknown = signed(data, UNREGISTERED, ulid(1))
    cases.append(case("plain-unknown-key-id", data, unknown, "unknown-key"))
    malformed_kid = signed(data, BILLING, ulid(1)) | {KEY_HEADER: "not a key id"}
    cases.append(case("plain-malformed-key-id", data, malformed_kid, "unknown-key"))
    missing = signed(data, BILLING, ulid(1))
    del missing[SIGNATURE_HEADER]
    cases.append(case("plain-missing-signature", data, missing, "unsigned"))
    no_key = signed(data, BILLING, ulid(1))
    del no_key[KEY_HEADER]
    cases.append(case("plain-missing-key", data, no_key, "unsigned"))
    unknown_scheme = signed(data, BILLING, ulid(1)) | {SCHEME_HEADER: "rsa"}
    cases.append(case("unknown-scheme", data, unknown_scheme, "unsigned"))
    bad_b64 = signed(data, BILLING, ulid(1))
    bad_b64[SIGNATURE_HEADER] = bad_b64[SIGNATURE_HEADER][:-2] + "+/"
    cases.append(
        case(
            "plain-bad-base64url",
            data,
            bad_b64,
            "bad-signature",
            note="characters outside the base64url alphabet",
        )
    )
    padded = signed(data, BILLING, ulid(1))
    padded[SIGNATURE_HEADER] += "=="
    cases.append(
        case(
            "plain-padded-base64url",
            data,
            padded,
            "bad-signature",
            note="base64url must be unpadded",
        )
    )
    data_stray = event(2, sender="stray")
    cases.append(
        case(
            "untrusted-root",
            data_stray,
            signed(data_stray, STRAY, ulid(2)),
            "untrusted-certificate",
            note="the certificate is signed by an untrusted root",
        )
    )
    data_old = event(3, sender="old")
    cases.append(
        case("expired-certificate", data_old, signed(data_old, OLD, ulid(3)), "expired-key")
    )
    batch = [event(10 + i) for i in range(3)]
    root, paths = merkle(batch)
    signature = b64e(BILLING.signing_key().sign(MERKLE_DOMAIN + root).signature)

    def merkle_headers(
        index: int, path: Sequence[bytes], count: int = len(batch)
    ) -> dict[str, str]:
        return {
            MSG_ID_HEADER: ulid(10 + index),
            SCHEME_HEADER: SCHEME_MERKLE,
            KEY_HEADER: BILLING.kid,
            SIGNATURE_HEADER: signature,
            PATH_HEADER: f"{index}/{count}/{b64e(b''.join(path))}",
        }

    for index in (0, 2):
        cases.append(
            case(
                f"merkle-valid-leaf-{index}",
                batch[index],
                merkle_headers(index, paths[index]),
                None,
                note=f"leaf {index} of a batch of {len(batch)}",
            )
        )
    wrong = [paths[0][0][:-1] + bytes([paths[0][0][-1] ^ 1]), *paths[0][1:]]
    cases.append(
        case(
            "merkle-wrong-proof",
            batch[0],
            merkle_headers(0, wrong),
            "bad-signature",
            note="one bit of the first sibling hash flipped",
        )
    )
    cases.append(
        case(
            "merkle-wrong-index",
            batch[0],
            merkle_headers(1, paths[0]),
            "bad-signature",
            note="leaf 0's path presented as leaf 1's",
        )
    )
    cases.append(
        case(
            "merkle-wrong-count",
            batch[2],
            merkle_headers(2, paths[2], count=4),
            "bad-signature",
            note="the path does not fit a batch of 4",
        )
    )
    cases.append(
        case(
            "merkle-other-message",
            event(99),
            merkle_headers(0, paths[0]),
            "bad-signature",
            note="a message that is not a leaf of the batch",
        )
    )
    no_path = merkle_headers(0, paths[0])
    del no_path[PATH_HEADER]
    cases.append(case("merkle-missing-path", batch[0], no_path, "bad-signature"))
    return _header([ROOT, BILLING, KB, STRAY, OLD, UNREGISTERED], registry) | {"cases": cases}


def envelopes() -> dict[str, Any]:
    registry = {BILLING.kid: certificate(BILLING, n=1)}
    cases: list[Case] = []

    def add(
        name: str,
        data: bytes,
        reason: str | None,
        *,
        msg_id: str = ulid(20),
        subject: str = EVENT_SUBJECT,
        note: str = "",
    ) -> None:
        cases.append(
            case(name, data, signed(data, BILLING, msg_id), reason, subject=subject, note=note)
        )

    add("well-formed", event(20), None)
    spaced = json.dumps(json.loads(event(20)), indent=1).encode()
    add(
        "well-formed-other-encoder",
        spaced,
        None,
        note="any JSON encoding is accepted: the signature covers the bytes as sent",
    )
    add("unknown-field-ignored", event(20)[:-1] + b',"extra":1}', None)
    twice = event(20)[:-1] + b',"to":"kb"}'
    add("field-named-twice", twice, "malformed", note='"to" appears twice')
    add("unknown-kind", event(20).replace(b'"kind":"event"', b'"kind":"gossip"'), "malformed")
    add("not-json", b"event", "malformed")
    add("missing-field", event(20).replace(b'"to":"events",', b""), "malformed")
    add(
        "bad-id",
        event(20, id="01JD/0"),
        "malformed",
        msg_id="01JD/0",
        note="the id must be a subject token",
    )
    big = event(20, body=b'"' + b"x" * LIMITS["max_payload_bytes"] + b'"')
    add("oversized", big, "oversized", note="larger than limits.max_payload_bytes")
    add(
        "sender-not-signer",
        event(20, sender="kb"),
        "misaddressed",
        note="sender differs from the certificate's owner",
    )
    add(
        "wrong-workflow-subject",
        event(20),
        "misaddressed",
        subject=f"{PREFIX}.event.{ulid(7)}.note",
    )
    add("kind-not-for-subject", event(20, kind="reply"), "misaddressed")
    add("not-permitted-subject", event(20), "misaddressed", subject=f"{PREFIX}.admin.x")
    add(
        "stale",
        event(20, created=float(NOW - 3600)),
        "stale",
        note="created more than max_age_s + clock_skew_s before now",
    )
    add("from-the-future", event(20, created=float(NOW + 60)), "stale")
    add(
        "msg-id-differs",
        event(20),
        "replayed",
        msg_id=ulid(21),
        note="Nats-Msg-Id must equal the signed envelope id",
    )
    return _header([ROOT, BILLING], registry) | {"cases": cases}


def tokens() -> dict[str, Any]:
    registry = {
        BILLING.kid: certificate(BILLING, n=1),
        GATEWAY.kid: certificate(GATEWAY, ingress=True, n=5),
    }
    cases: list[Case] = []

    def add(name: str, token: str, reason: str | None, note: str = "") -> None:
        data = event(30, caller=token)
        cases.append(case(name, data, signed(data, BILLING, ulid(30)), reason, note=note))

    add("valid", caller_token(GATEWAY), None)
    add(
        "expired",
        caller_token(GATEWAY, iat=NOW - 7200),
        "expired-token",
        note="exp one hour before now (beyond leeway_s)",
    )
    add("not-yet-valid", caller_token(GATEWAY, iat=NOW + 600), "expired-token")
    add(
        "wrong-issuer-key",
        caller_token(GATEWAY, signer=KB),
        "invalid-token",
        note="kid names the gateway's key; signed with another key",
    )
    add(
        "issuer-not-ingress",
        caller_token(BILLING),
        "invalid-token",
        note="billing's certificate has ingress: false",
    )
    add("issuer-unknown", caller_token(UNREGISTERED), "unknown-key")
    add("not-a-jwt", "not-a-token", "invalid-token")
    return _header([ROOT, BILLING, GATEWAY, KB, UNREGISTERED], registry) | {"cases": cases}


TRIAGE: Final = KeyPair("triage", seed("triage"))
LINK_TYPE: Final = "mesh-delegation+jwt"


def link(
    key: KeyPair,
    *,
    to: str,
    step: str,
    scopes: Sequence[str],
    prev: str,
    expires: int = NOW + 1800,
    workflow: str = WORKFLOW,
    iss: str | None = None,
) -> str:
    """A delegation link as ``jetmesh.identity.delegation.mint_link`` writes it."""
    header = {"alg": "EdDSA", "kid": key.kid, "typ": LINK_TYPE}
    claims = {
        "iss": iss or key.owner,
        "to": to,
        "wf": workflow,
        "step": step,
        "scopes": sorted(set(scopes)),
        "iat": NOW - 30,
        "exp": expires,
        "prev": prev,
    }
    signing_input = f"{b64e(msgspec.json.encode(header))}.{b64e(msgspec.json.encode(claims))}"
    signature = key.signing_key().sign(signing_input.encode()).signature
    return f"{signing_input}.{b64e(signature)}"


def digest(text: str) -> str:
    """The ``prev`` of the link after ``text`` (a link, or the caller token for link 0)."""
    return b64e(hashlib.sha256(text.encode()).digest())


def chains() -> dict[str, Any]:
    registry = {
        GATEWAY.kid: certificate(GATEWAY, ingress=True, n=5),
        TRIAGE.kid: certificate(TRIAGE, n=6),
        KB.kid: certificate(KB, n=2),
    }
    token = caller_token(GATEWAY, scopes=["kb:read", "refund:write"])
    cases: list[Case] = []
    scopes0 = ["kb:read", "refund:write"]
    link0 = link(GATEWAY, to="triage", step="triage", scopes=scopes0, prev=digest(token))

    def task(
        name: str,
        chain: Sequence[str],
        reason: str | None,
        *,
        sender: KeyPair = TRIAGE,
        to: str = "billing",
        step: str = "triage/billing.1",
        note: str = "",
    ) -> None:
        n = 40 + len(cases)
        data = encode(
            Envelope(
                id=ulid(n),
                kind="task",
                workflow=WORKFLOW,
                sender=sender.owner,
                to=to,
                created=float(NOW - 1),
                step=step,
                caller=token,
                chain=tuple(chain),
            )
        )
        cases.append(
            case(
                name,
                data,
                signed(data, sender, ulid(n)),
                reason,
                subject=f"{PREFIX}.agent.{to}.task",
                note=note,
            )
        )

    def link1(**fields: Any) -> str:
        values: dict[str, Any] = {
            "to": "billing",
            "step": "triage/billing.1",
            "scopes": ["kb:read"],
            "prev": digest(link0),
        }
        values.update(fields)
        key = values.pop("key", TRIAGE)
        return str(link(key, **values))

    task(
        "one-link",
        [link0],
        None,
        sender=GATEWAY,
        to="triage",
        step="triage",
        note="the ingress hands the task to triage",
    )
    task("two-links", [link0, link1()], None, note="gateway -> triage -> billing, narrowed")
    task(
        "prev-digest-wrong",
        [link0, link1(prev=digest(token))],
        "bad-delegation",
        note="link 1's prev is the token's digest, not link 0's",
    )
    task(
        "link0-prev-wrong",
        [
            link(GATEWAY, to="triage", step="triage", scopes=scopes0, prev=digest("another token")),
            link1(),
        ],
        "bad-delegation",
        note="link 0 does not follow the caller token",
    )
    narrow0 = link(GATEWAY, to="triage", step="triage", scopes=["kb:read"], prev=digest(token))
    task(
        "scopes-widened",
        [narrow0, link1(scopes=["kb:read", "refund:write"], prev=digest(narrow0))],
        "delegation-widened",
        note="link 1 hands on refund:write, which link 0 did not give",
    )
    task(
        "scopes-widened-beyond-token",
        [link(GATEWAY, to="triage", step="triage", scopes=[*scopes0, "admin"], prev=digest(token))],
        "delegation-widened",
        sender=GATEWAY,
        to="triage",
        step="triage",
        note="link 0 hands on more than the caller token has",
    )
    task(
        "expiry-widened",
        [link0, link1(expires=NOW + 3600)],
        "delegation-widened",
        note="link 1 expires after link 0",
    )
    task(
        "link-expired",
        [
            link(
                GATEWAY,
                to="triage",
                step="triage",
                scopes=scopes0,
                prev=digest(token),
                expires=NOW - 60,
            )
        ],
        "expired-token",
        sender=GATEWAY,
        to="triage",
        step="triage",
    )
    task(
        "signed-by-another-role",
        [link0, link1(key=KB, iss="triage")],
        "bad-delegation",
        note="link 1 names triage as its signer but is signed with kb's key",
    )
    task(
        "link0-not-ingress",
        [link(TRIAGE, to="triage", step="triage", scopes=scopes0, prev=digest(token))],
        "bad-delegation",
        to="triage",
        step="triage",
        note="the chain must start at an ingress",
    )
    forged = link0[:-4] + ("AAAA" if not link0.endswith("AAAA") else "BBBB")
    task("link-signature-forged", [forged, link1(prev=digest(forged))], "bad-delegation")
    task(
        "step-not-nested",
        [link0, link1(step="other/billing.1")],
        "bad-delegation",
        step="other/billing.1",
    )
    task("other-workflow", [link0, link1(workflow=ulid(7))], "bad-delegation")
    task(
        "last-link-to-another-role",
        [link0, link1(to="kb")],
        "bad-delegation",
        note="the chain hands the step to kb, the task is addressed to billing",
    )
    task("no-chain", [], "bad-delegation")
    return _header([ROOT, GATEWAY, TRIAGE, KB], registry) | {"cases": cases}


ABOUT: Final = (
    "jetmesh conformance vectors: see 'Conformance vectors' in subjects/README.md. Verify "
    "each case's message (UTF-8 bytes) received on subject with headers, at time now "
    "(also the stream's storage time), with roots trusted and registry as the MESH_KEYS "
    "bucket; expect verdict and reason."
)


def render() -> dict[str, str]:
    """Every vector file by name, and its content."""
    files = {
        "signatures.json": signatures(),
        "envelopes.json": envelopes(),
        "tokens.json": tokens(),
        "chains.json": chains(),
    }
    return {
        name: json.dumps({"about": ABOUT} | content, indent=2, sort_keys=True) + "\n"
        for name, content in files.items()
    }


def problems(root: Path = VECTORS_DIR) -> list[str]:
    expected = render()
    found = []
    for name, content in sorted(expected.items()):
        target = root / name
        if not target.exists():
            found.append(f"missing: vectors/{name}")
        elif target.read_text(encoding="utf-8") != content:
            found.append(f"stale:   vectors/{name}")
    found += [
        f"extra:   vectors/{p.name}" for p in sorted(root.glob("*.json")) if p.name not in expected
    ]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subjects.vectors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--dir", type=Path, default=VECTORS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    found = problems(args.dir)
    if args.check:
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print(f"conformance vectors are out of date: {HINT}", file=sys.stderr)
            return 1
        print(f"{len(render())} vector files are up to date")
        return 0
    for name, content in render().items():
        (args.dir / name).write_text(content, encoding="utf-8", newline="\n")
    for target in args.dir.glob("*.json"):
        if target.name not in render():
            target.unlink()
    print(f"{len(found)} of {len(render())} vector files changed")
    return 0
