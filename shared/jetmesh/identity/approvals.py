"""Approval tokens: a person's single-use approval of one exact tool call.

An approval token is a standard EdDSA JWT minted by an ingress key (``jetmesh approve``
mints it with the CLI's), like a caller token, but bound to one request: the workflow,
the approval's step, the tool and the SHA-256 of the canonical JSON of the arguments. Its
audience keeps it apart from caller tokens (a caller token is no approval, and an approval
is refused where a caller token is expected)::

    header {"alg": "EdDSA", "typ": "JWT", "kid": "<ingress kid>"}
    claims {"iss": "cli", "sub": "bob", "aud": "jetmesh:tool-approval",
            "workflow": "01J...", "step": "triage/billing.1/approval.1", "tool": "refund",
            "args_sha256": "9f2c...", "iat": 1764000000, "exp": 1764000900, "jti": "01J..."}

The tool gateway verifies it (:func:`verify_approval`) and spends its ``jti`` once.

Example:
    >>> token = mint_approval(key, subject="bob", workflow=w, step=s, tool="refund",
    ...                       args_sha256=digest, ttl_s=900)          # doctest: +SKIP
"""

from __future__ import annotations

import time

import jwt
import msgspec

from .._exceptions import ApprovalExpired, ApprovalInvalid, ExpiredToken
from ..envelope import new_id
from .certificates import Certificate
from .jws import check_jws
from .keys import KeyPair, jwt_public_key
from .validity import check_validity

AUDIENCE = "jetmesh:tool-approval"
"""The ``aud`` of every approval token (and of no caller token)."""

DEFAULT_APPROVAL_TTL_S = 900.0
"""How long an approval stays usable after the person gave it: the waiting step takes it
within moments; the margin covers a replica that died and is replaced."""


class ApprovalClaims(msgspec.Struct, frozen=True, kw_only=True):
    """A verified approval: who approved what, until when."""

    sub: str
    """The person who approved."""
    workflow: str
    step: str
    """The approval's step key (``<task step>/approval.<n>``)."""
    tool: str
    args_sha256: str
    """Hex SHA-256 of the canonical JSON of the arguments approved."""
    exp: float
    jti: str
    """The approval's id: it is spent on first use."""
    iss: str = ""


def mint_approval(
    issuer: KeyPair,
    *,
    subject: str,
    workflow: str,
    step: str,
    tool: str,
    args_sha256: str,
    ttl_s: float = DEFAULT_APPROVAL_TTL_S,
    now: float | None = None,
) -> str:
    """Mint an approval token with an ingress key (the person is ``subject``)."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": issuer.owner,
        "sub": subject,
        "aud": AUDIENCE,
        "workflow": workflow,
        "step": step,
        "tool": tool,
        "args_sha256": args_sha256,
        "iat": issued,
        "nbf": issued,
        "exp": int(issued + ttl_s),
        "jti": new_id(),
    }
    return jwt.encode(claims, issuer.jwt_key(), algorithm="EdDSA", headers={"kid": issuer.kid})


def approval_key_id(token: str, tool: str) -> str:
    """The ``kid`` in an approval token's header, before any verification.

    Raises:
        ApprovalInvalid: not a strictly encoded JWT, not EdDSA, or no ``kid``.
    """
    try:
        check_jws(token)
        header = jwt.get_unverified_header(token)
    except (ValueError, jwt.PyJWTError) as exc:
        raise ApprovalInvalid(tool, f"approval unreadable: {exc}") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or header.get("alg") != "EdDSA":
        raise ApprovalInvalid(tool, f"approval must be EdDSA with a kid, got {header!r}")
    return kid


def verify_approval(
    token: str, issuer: Certificate, *, tool: str, leeway_s: float = 0.0, at: float | None = None
) -> ApprovalClaims:
    """Verify an approval token against the certificate of the key that minted it.

    Only the signature, the algorithm, the issuer's ingress flag, the audience and the
    validity times are checked here; whether it approves *this* request (workflow, step,
    tool, arguments) and whether it was used before is the gateway's to check.

    Raises:
        ApprovalInvalid: forged, malformed, another audience, or the issuer is no ingress.
        ApprovalExpired: expired or not yet valid.
    """
    if not issuer.ingress:
        raise ApprovalInvalid(tool, f"{issuer.name} ({issuer.kid}) is not an ingress")
    try:
        check_jws(token)
        claims = jwt.decode(
            token,
            jwt_public_key(issuer.public_key),
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            options={
                "require": ["exp", "iat", "sub", "jti", "aud"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except (ValueError, jwt.PyJWTError) as exc:
        raise ApprovalInvalid(tool, f"approval rejected: {exc}") from None
    try:
        check_validity("approval", claims, at, leeway_s, ExpiredToken)
    except ExpiredToken as exc:
        raise ApprovalExpired(tool, exc.detail) from None
    try:
        return msgspec.convert(claims, ApprovalClaims, strict=False)
    except msgspec.ValidationError as exc:
        raise ApprovalInvalid(tool, f"approval claims: {exc}") from None
