"""Agent certificates: the mesh root vouches for an agent's key, subjects and scopes.

A certificate is a standard EdDSA JWT signed by a root key (header ``kid`` names the root),
so any language can read it with an ordinary JWT library::

    {"iss": "<root kid>", "sub": "billing", "kid": "billing-3fa2...", "pub": "<b64url>",
     "publish": ["mesh.agent.*.task", ...], "subscribe": [...], "scopes": ["kb:read"],
     "ingress": false, "iat": 1764000000, "exp": 1766592000, "jti": "01J..."}

``ingress: true`` marks a key that may mint caller tokens (a gateway or the CLI).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

import jwt
import msgspec

from .._exceptions import ExpiredKey, UntrustedCertificate
from ..addresses import Subjects, subject_matches
from ..envelope import new_id
from .jws import b64d, b64e, check_jws
from .keys import KeyPair, jwt_public_key
from .validity import check_validity

CERT_TYP = "jetmesh-cert+jwt"


class Certificate(msgspec.Struct, frozen=True, kw_only=True):
    """A verified agent certificate."""

    name: str
    kid: str
    public_key: bytes
    issuer: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    scopes: frozenset[str]
    ingress: bool
    issued: float
    expires: float
    token: str
    """The JWT this was read from, as published in the registry."""

    def may_publish(self, subject: str) -> bool:
        return _matches_any(self.publish, subject)


@lru_cache(maxsize=8192)
def _matches_any(patterns: tuple[str, ...], subject: str) -> bool:
    return any(subject_matches(p, subject) for p in patterns)


def default_permissions(subjects: Subjects, name: str) -> tuple[list[str], list[str]]:
    """Subjects an ordinary agent publishes to and subscribes to."""
    p = subjects.prefix
    publish = [f"{p}.agent.*.task", f"{p}.agent.*.reply.*", f"{p}.event.>", f"{p}.dlq.{name}"]
    subscribe = [subjects.task(name), f"{p}.agent.{name}.reply.*"]
    return publish, subscribe


def issue_certificate(
    root: KeyPair,
    agent: KeyPair,
    *,
    publish: Sequence[str],
    subscribe: Sequence[str],
    scopes: Sequence[str] = (),
    ingress: bool = False,
    ttl_s: float,
    now: float | None = None,
) -> str:
    """Sign a certificate for ``agent``'s key with the root key; returns the JWT."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": root.kid,
        "sub": agent.owner,
        "kid": agent.kid,
        "pub": b64e(agent.public_key),
        "publish": list(publish),
        "subscribe": list(subscribe),
        "scopes": sorted(set(scopes)),
        "ingress": ingress,
        "iat": issued,
        "nbf": issued,
        "exp": int(issued + ttl_s),
        "jti": new_id(),
    }
    headers = {"kid": root.kid, "typ": CERT_TYP}
    return jwt.encode(claims, root.jwt_key(), algorithm="EdDSA", headers=headers)


def verify_certificate(
    token: str,
    roots: Mapping[str, bytes],
    *,
    leeway_s: float = 0.0,
    at: float | None = None,
    check_not_before: bool = True,
) -> Certificate:
    """Verify a certificate JWT against the trusted root public keys (by root kid).

    Args:
        token: the certificate JWT.
        roots: trusted root public keys by key id.
        leeway_s: tolerated clock skew.
        at: the time at which it must be valid (default now; audit reads pass the time
            the message was stored).
        check_not_before: False for audit reads: a certificate renewed for the same key
            after the message was stored still vouches for the key that signed it.

    Raises:
        UntrustedCertificate: not signed by a trusted root, wrong algorithm or malformed
            (not strictly encoded, a claim named twice).
        ExpiredKey: expired or not yet valid.
    """
    try:
        check_jws(token)
        header = jwt.get_unverified_header(token)
    except (ValueError, jwt.PyJWTError) as exc:
        raise UntrustedCertificate(f"unreadable certificate: {exc}") from None
    root_pub = roots.get(str(header.get("kid")))
    if root_pub is None or header.get("alg") != "EdDSA" or header.get("typ") != CERT_TYP:
        raise UntrustedCertificate(
            f"certificate issued by {header.get('kid')!r} with alg {header.get('alg')!r}; "
            "not a trusted root"
        )
    try:
        claims = jwt.decode(
            token,
            jwt_public_key(root_pub),
            algorithms=["EdDSA"],
            options={
                "require": ["exp", "iat", "sub", "kid", "pub", "iss"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise UntrustedCertificate(f"certificate rejected: {exc}") from None
    check_validity(
        "certificate", claims, at, leeway_s, ExpiredKey, check_not_before=check_not_before
    )
    try:
        return Certificate(
            name=str(claims["sub"]),
            kid=str(claims["kid"]),
            public_key=b64d(str(claims["pub"])),
            issuer=str(claims["iss"]),
            publish=tuple(claims.get("publish", ())),
            subscribe=tuple(claims.get("subscribe", ())),
            scopes=frozenset(claims.get("scopes", ())),
            ingress=bool(claims.get("ingress", False)),
            issued=float(claims["iat"]),
            expires=float(claims["exp"]),
            token=token,
        )
    except (TypeError, ValueError) as exc:
        raise UntrustedCertificate(f"certificate claims malformed: {exc}") from None
