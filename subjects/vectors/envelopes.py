"""``envelopes.json``: well-formed envelopes and each way one is refused."""

from __future__ import annotations

import json
from typing import Any

from .common import (
    BILLING,
    EVENT_SUBJECT,
    LIMITS,
    NOW,
    PREFIX,
    ROOT,
    Case,
    case,
    certificate,
    event,
    file_header,
    signed,
    ulid,
)


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
    return file_header([ROOT, BILLING], registry) | {"cases": cases}
