"""The trust store: root keys, verified certificates and caller tokens, cached.

Certificates are looked up by key id in the registry (a JetStream key-value bucket),
verified once against the mesh root, and cached; expiry is re-checked on every use.
Caller tokens are verified once per distinct token string and cached the same way.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from nacl.signing import VerifyKey

from .._exceptions import ExpiredKey, ExpiredToken, UnknownKey
from .certificates import Certificate, verify_certificate
from .tokens import Caller, token_key_id, verify_token

CertificateLookup = Callable[[str], Awaitable[str | None]]
"""Returns the certificate JWT registered under a key id, or None."""

DEFAULT_CACHE_SIZE = 4096
NEGATIVE_TTL_S = 1.0


class TrustStore:
    """Verifies and caches certificates and caller tokens for one process."""

    def __init__(
        self,
        roots: Mapping[str, bytes],
        lookup: CertificateLookup,
        *,
        leeway_s: float = 5.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.roots = dict(roots)
        self._lookup = lookup
        self._leeway = leeway_s
        self._cache_size = cache_size
        self._certs: OrderedDict[str, tuple[Certificate, VerifyKey]] = OrderedDict()
        self._missing: dict[str, float] = {}
        self._callers: OrderedDict[str, Caller] = OrderedDict()

    def add(self, certificate_jwt: str) -> Certificate:
        """Verify a certificate and put it in the cache (used for a process's own cert)."""
        cert = verify_certificate(certificate_jwt, self.roots, leeway_s=self._leeway)
        self._remember(cert)
        return cert

    def _remember(self, cert: Certificate) -> None:
        self._certs[cert.kid] = (cert, VerifyKey(cert.public_key))
        self._missing.pop(cert.kid, None)
        if len(self._certs) > self._cache_size:
            self._certs.popitem(last=False)

    async def certificate(
        self, kid: str, *, at: float | None = None
    ) -> tuple[Certificate, VerifyKey]:
        """The verified certificate for ``kid`` and its verify key, valid at ``at``.

        Raises:
            UnknownKey: no certificate is registered under ``kid``.
            UntrustedCertificate: the registered certificate is not from a trusted root.
            ExpiredKey: the certificate has expired.
        """
        entry = self._certs.get(kid)
        now = time.time()
        if entry is None:
            if self._missing.get(kid, 0.0) > now:
                raise UnknownKey(f"no certificate for key id {kid!r}")
            token = await self._lookup(kid)
            if token is None:
                self._missing[kid] = now + NEGATIVE_TTL_S
                raise UnknownKey(f"no certificate for key id {kid!r}")
            cert = verify_certificate(
                token, self.roots, leeway_s=self._leeway, at=at, check_not_before=at is None
            )
            if cert.kid != kid:
                raise UnknownKey(f"registry entry {kid!r} holds a certificate for {cert.kid!r}")
            self._remember(cert)
            entry = self._certs[kid]
        when = now if at is None else at
        if entry[0].expires + self._leeway < when:
            raise ExpiredKey(f"certificate {kid} expired at {entry[0].expires:.0f}")
        return entry

    async def caller(self, token: str, *, at: float | None = None) -> Caller:
        """The verified caller of a token, valid at ``at`` (default now).

        Raises:
            InvalidToken: forged, malformed, or minted by a key that is not an ingress.
            ExpiredToken: the token has expired.
        """
        caller = self._callers.get(token)
        if caller is None:
            issuer, _ = await self.certificate(token_key_id(token), at=at)
            caller = verify_token(token, issuer, leeway_s=self._leeway, at=at)
            self._callers[token] = caller
            if len(self._callers) > self._cache_size:
                self._callers.popitem(last=False)
        if caller.expires + self._leeway < (time.time() if at is None else at):
            raise ExpiredToken(f"caller token {caller.token_id} expired at {caller.expires:.0f}")
        return caller
