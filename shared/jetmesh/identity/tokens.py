"""Caller tokens: who started a workflow, for which tenant, with which scopes.

A caller token is a standard EdDSA JWT minted once at ingress by a key whose certificate
has ``ingress: true``, and carried unchanged in ``Envelope.caller`` to every hop::

    header {"alg": "EdDSA", "typ": "JWT", "kid": "<ingress kid>"}
    claims {"iss": "gateway", "sub": "alice", "tenant": "acme", "scopes": ["kb:read"],
            "iat": 1764000000, "exp": 1764003600, "jti": "01J..."}
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import jwt
import msgspec

from .._exceptions import ExpiredToken, InvalidToken
from ..envelope import new_id
from .certificates import Certificate
from .jws import check_jws
from .keys import KeyPair, jwt_public_key
from .validity import check_validity


class Caller(msgspec.Struct, frozen=True):
    """The verified identity of the caller a workflow runs for."""

    subject: str
    tenant: str
    scopes: frozenset[str]
    expires: float
    token_id: str
    issuer: str

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def mint_token(
    issuer: KeyPair,
    *,
    subject: str,
    tenant: str,
    scopes: Sequence[str],
    ttl_s: float,
    now: float | None = None,
) -> str:
    """Mint a caller token with an ingress key."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": issuer.owner,
        "sub": subject,
        "tenant": tenant,
        "scopes": sorted(set(scopes)),
        "iat": issued,
        "nbf": issued,
        "exp": int(issued + ttl_s),
        "jti": new_id(),
    }
    return jwt.encode(claims, issuer.jwt_key(), algorithm="EdDSA", headers={"kid": issuer.kid})


def token_key_id(token: str) -> str:
    """The ``kid`` in a token's header, before any verification.

    Raises:
        InvalidToken: when the token is not a strictly encoded JWT with a ``kid``.
    """
    try:
        check_jws(token)
        header = jwt.get_unverified_header(token)
    except (ValueError, jwt.PyJWTError) as exc:
        raise InvalidToken(f"caller token unreadable: {exc}") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or header.get("alg") != "EdDSA":
        raise InvalidToken(f"caller token must be EdDSA with a kid, got {header!r}")
    return kid


def verify_token(
    token: str, issuer: Certificate, *, leeway_s: float = 0.0, at: float | None = None
) -> Caller:
    """Verify a caller token against its issuer's certificate, valid at ``at`` (default now).

    Raises:
        InvalidToken: forged, malformed (not strictly encoded, a claim named twice), or the
            issuer may not mint tokens.
        ExpiredToken: expired or not yet valid.
    """
    if not issuer.ingress:
        raise InvalidToken(f"{issuer.name} ({issuer.kid}) is not an ingress; it may not mint")
    try:
        check_jws(token)
        claims = jwt.decode(
            token,
            jwt_public_key(issuer.public_key),
            algorithms=["EdDSA"],
            options={
                "require": ["exp", "iat", "sub", "jti"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except (ValueError, jwt.PyJWTError) as exc:
        raise InvalidToken(f"caller token rejected: {exc}") from None
    check_validity("caller token", claims, at, leeway_s, ExpiredToken)
    return Caller(
        subject=str(claims["sub"]),
        tenant=str(claims.get("tenant", "")),
        scopes=frozenset(claims.get("scopes", ())),
        expires=float(claims["exp"]),
        token_id=str(claims["jti"]),
        issuer=str(claims.get("iss", issuer.name)),
    )
