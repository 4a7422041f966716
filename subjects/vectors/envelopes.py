"""``envelopes.json``: well-formed envelopes and each way one is refused."""

from __future__ import annotations

import json
from typing import Any

from jetmesh.envelope import Envelope, encode
from jetmesh.identity import KeyPair

from .common import (
    BILLING,
    EVENT_SUBJECT,
    GATEWAY,
    KB,
    LIMITS,
    NOW,
    PREFIX,
    ROOT,
    WORKFLOW,
    Case,
    caller_token,
    case,
    certificate,
    event,
    file_header,
    signed,
    ulid,
)


def envelopes() -> dict[str, Any]:
    registry = {
        BILLING.kid: certificate(BILLING, n=1),
        KB.kid: certificate(KB, n=2),
        GATEWAY.kid: certificate(GATEWAY, ingress=True, n=5),
    }
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
    token = caller_token(GATEWAY)
    call = {"id": ulid(30), "to": "billing", "workflow": WORKFLOW, "step": "triage/billing.1"}

    def reply(
        name: str, n: int, signer: KeyPair, reason: str | None, note: str, **fields: Any
    ) -> None:
        values: dict[str, Any] = {
            "id": ulid(n),
            "kind": "reply",
            "workflow": WORKFLOW,
            "sender": signer.owner,
            "to": "triage",
            "created": float(NOW - 1),
            "parent": call["id"],
            "step": call["step"],
            "caller": token,
        }
        values.update(fields)
        data = encode(Envelope(**values))
        subject = f"{PREFIX}.agent.triage.reply.r1"
        cases.append(
            case(name, data, signed(data, signer, ulid(n)), reason, subject=subject, note=note)
            | {"call": call}
        )

    reply("reply-from-the-callee", 31, BILLING, None, "billing answers triage's call to it")
    reply(
        "reply-signed-by-another-role",
        32,
        KB,
        "forged-reply",
        "kb, a role that may answer triage, answers triage's call to billing",
    )
    reply(
        "reply-for-another-step",
        33,
        BILLING,
        "forged-reply",
        "billing names the call but another step of it",
        step="triage/billing.2",
    )
    return file_header([ROOT, BILLING, KB, GATEWAY], registry) | {"cases": cases}
