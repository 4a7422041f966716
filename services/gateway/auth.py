"""Who is calling: an API key from the config, or a JWT from the configured issuer.

``Authorization: Bearer <credential>``. A credential of three dot-separated parts is read
as a JWT when an issuer is configured; anything else as an API key, looked up by its
SHA-256 among the configured hashes (each compared in constant time). A JWT is checked
against the issuer's JWKS (fetched in a thread, cached by ``kid``, fetched again for an
unknown ``kid`` at most once per ``refetch_floor_s``), its ``alg`` among the configured
public-key algorithms, its ``iss``, ``aud``, ``exp`` and ``nbf``.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from .problems import Problem
from .settings import ApiKey, GatewaySettings, JwtIssuer, key_hash

BEARER = "bearer"


@dataclass(frozen=True)
class HttpCaller:
    """An authenticated HTTP caller: what its caller token will say."""

    subject: str
    tenant: str
    scopes: tuple[str, ...]
    via: str
    """``api-key`` or ``jwt``."""

    @property
    def key(self) -> str:
        """The caller's name for idempotency keys and rate limits: ``tenant/subject``."""
        return f"{self.tenant}/{self.subject}"


class ApiKeys:
    """The configured API keys, by hash."""

    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self._keys = keys

    def caller(self, given: str) -> HttpCaller:
        """The caller ``given`` stands for.

        Raises:
            Problem: ``unknown-api-key``.
        """
        digest = key_hash(given).encode()
        found: ApiKey | None = None
        for key in self._keys:  # every hash compared, in constant time each
            if hmac.compare_digest(digest, key.sha256.encode()):
                found = key
        if found is None:
            raise Problem("unknown-api-key", "the API key is not one the gateway knows")
        return HttpCaller(found.subject, found.tenant, found.scopes, "api-key")


class JwksKeys:
    """An issuer's public keys by ``kid``, fetched in a thread, refetched for an unknown
    ``kid`` at most once per ``floor_s``."""

    def __init__(
        self, url: str, *, floor_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=5.0)
        self._floor_s = floor_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many times the JWKS was fetched."""

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key ``kid``.

        Raises:
            Problem: ``unknown-key`` (not in the JWKS, even fetched again), or
                ``jwks-unavailable`` (the JWKS could not be fetched).
        """
        known = self._keys.get(kid)
        if known is not None:
            return known
        async with self._lock:
            if kid not in self._keys and self._clock() - self._fetched_at >= self._floor_s:
                await self._fetch()
        known = self._keys.get(kid)
        if known is None:
            raise Problem("unknown-key", f"no key {kid!r} in the issuer's JWKS")
        return known

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        try:
            found = await asyncio.to_thread(self._client.get_jwk_set, True)
        except jwt.PyJWKClientError as exc:
            raise Problem("jwks-unavailable", f"the issuer's JWKS: {exc}") from None
        self._keys = {k.key_id: k for k in found.keys if k.key_id}


_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
"""The JWK ``kty`` each family of algorithms needs (by the alg's first two letters)."""

_JWT_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token-expired"),
    (jwt.ImmatureSignatureError, "token-not-yet-valid"),
    (jwt.InvalidIssuerError, "wrong-issuer"),
    (jwt.InvalidAudienceError, "wrong-audience"),
    (jwt.InvalidSignatureError, "bad-signature"),
    (jwt.InvalidKeyError, "bad-signature"),
    (jwt.MissingRequiredClaimError, "claims-invalid"),
    (jwt.InvalidAlgorithmError, "algorithm-refused"),
)


class JwtCallers:
    """Callers authenticated by the configured issuer's JWTs."""

    def __init__(self, issuer: JwtIssuer, keys: JwksKeys | None = None) -> None:
        self.issuer = issuer
        self.keys = keys or JwksKeys(issuer.jwks_url, floor_s=issuer.refetch_floor_s)

    async def caller(self, token: str) -> HttpCaller:
        """The caller ``token`` authenticates.

        Raises:
            Problem: a 401 with the reason (see :data:`_JWT_REASONS`), or
                ``jwks-unavailable``.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Problem("token-malformed", f"not a JWT: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.issuer.algorithms:
            raise Problem(
                "algorithm-refused",
                f"alg {alg!r} is not one of {', '.join(self.issuer.algorithms)}",
            )
        if not isinstance(kid, str) or not kid:
            raise Problem("unknown-key", "the token names no kid")
        jwk = await self.keys.key(kid)
        declared = getattr(jwk, "_jwk_data", {}).get("alg")
        if (declared is not None and declared != alg) or _KEY_TYPES.get(str(alg)[:2]) != (
            jwk.key_type
        ):
            raise Problem(
                "algorithm-refused",
                f"key {kid!r} ({jwk.key_type}, {declared or 'any alg'}) is not for {alg}",
            )
        claims = self._decode(token, jwk, str(alg))
        return _caller_of(claims, self.issuer)

    def _decode(self, token: str, jwk: jwt.PyJWK, alg: str) -> dict[str, Any]:
        i = self.issuer
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                jwk.key,
                algorithms=[alg],
                audience=i.audience,
                issuer=i.issuer,
                leeway=i.leeway_s,
                options={"require": ["exp", "iss", "aud", i.subject_claim]},
            )
        except (TypeError, ValueError) as exc:  # a key PyJWT cannot use for the alg
            raise Problem("bad-signature", f"token refused: {exc}") from None
        except jwt.PyJWTError as exc:
            reason = next((r for t, r in _JWT_REASONS if isinstance(exc, t)), "token-malformed")
            raise Problem(reason, f"token refused: {exc}") from None
        return claims


def _caller_of(claims: dict[str, Any], issuer: JwtIssuer) -> HttpCaller:
    subject = claims.get(issuer.subject_claim)
    tenant = claims.get(issuer.tenant_claim, "default")
    scopes = claims.get(issuer.scopes_claim, [])
    if isinstance(scopes, str):
        scopes = scopes.split()
    if (
        not isinstance(subject, str)
        or not subject
        or not isinstance(tenant, str)
        or not tenant
        or not isinstance(scopes, list)
        or not all(isinstance(s, str) for s in scopes)
    ):
        raise Problem(
            "claims-invalid",
            f"{issuer.subject_claim!r} and {issuer.tenant_claim!r} must be strings, "
            f"{issuer.scopes_claim!r} a string or a list of strings",
        )
    return HttpCaller(subject, tenant, tuple(sorted(set(scopes))), "jwt")


class Authenticator:
    """API keys and JWTs, as configured."""

    def __init__(self, settings: GatewaySettings, jwks: JwksKeys | None = None) -> None:
        self.api_keys = ApiKeys(settings.api_keys)
        self.jwt = JwtCallers(settings.jwt, jwks) if settings.jwt is not None else None

    async def caller(self, authorization: str | None) -> HttpCaller:
        """The caller of an ``Authorization`` header.

        Raises:
            Problem: a 401 (or ``jwks-unavailable``).
        """
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != BEARER or not credential:
            raise Problem("missing-credentials", "send Authorization: Bearer <API key or JWT>")
        if self.jwt is not None and credential.count(".") == 2:
            return await self.jwt.caller(credential)
        return self.api_keys.caller(credential)
