"""``tokens.json``: events carrying caller tokens, valid and each way one is refused."""

from __future__ import annotations

from typing import Any

from .common import (
    BILLING,
    GATEWAY,
    KB,
    NOW,
    ROOT,
    UNREGISTERED,
    Case,
    caller_token,
    case,
    certificate,
    event,
    file_header,
    signed,
    ulid,
)


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
    return file_header([ROOT, BILLING, GATEWAY, KB, UNREGISTERED], registry) | {"cases": cases}
