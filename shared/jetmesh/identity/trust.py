"""The trust store: root keys, verified certificates and caller tokens, cached.

Certificates are looked up by key id in the registry (a JetStream key-value bucket),
verified once against the mesh root, and cached; expiry is re-checked on every use.
Caller tokens are verified once per distinct token string and cached the same way.

Revocation (``revoked.<kid>`` in the registry) is checked on every use of a key id, of a
message's signer and of a caller token's issuer alike, against an answer at most
``revocation_ttl_s`` old: a "not revoked" answer is asked again after that time, so a
revocation takes effect in every process within ``revocation_ttl_s`` (plus one registry
read) even for a certificate cached long before. A "revoked" answer is kept for good. When
the registry cannot be read, the last answer is kept and asked again on the next use.
The look-up is a direct get (no consumer), so it needs only the registry's read
permissions that every role has.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from nacl.signing import VerifyKey

from .._exceptions import BadDelegation, ExpiredKey, ExpiredToken, RevokedKey, UnknownKey
from ..envelope import Envelope
from .certificates import Certificate, verify_certificate
from .delegation import Delegation, Link, check_chain, decode_link, link_key_id, read_link
from .revocation import Revocation
from .tokens import Caller, token_key_id, verify_token

log = logging.getLogger("jetmesh.trust")

CertificateLookup = Callable[[str], Awaitable[str | None]]
"""Returns the certificate JWT registered under a key id, or None."""

RevocationLookup = Callable[[str], Awaitable[Revocation | None]]
"""Returns the revocation record of a key id, None when it is not revoked; raises when the
registry cannot be read."""

DEFAULT_CACHE_SIZE = 4096
NEGATIVE_TTL_S = 1.0
REVOCATION_TTL_S = 1.0
"""How long a "not revoked" answer is trusted: the longest a revocation takes to reach a
process that already verified the key."""


class TrustStore:
    """Verifies and caches certificates and caller tokens for one process."""

    def __init__(
        self,
        roots: Mapping[str, bytes],
        lookup: CertificateLookup,
        *,
        leeway_s: float = 5.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
        revocations: RevocationLookup | None = None,
        revocation_ttl_s: float = REVOCATION_TTL_S,
    ) -> None:
        self.roots = dict(roots)
        self._lookup = lookup
        self._revocations = revocations
        self._revocation_ttl = revocation_ttl_s
        self._not_revoked_until: OrderedDict[str, float] = OrderedDict()
        self._revoked: dict[str, Revocation] = {}
        self._leeway = leeway_s
        self._cache_size = cache_size
        self._certs: OrderedDict[str, tuple[Certificate, VerifyKey]] = OrderedDict()
        self._missing: dict[str, float] = {}
        self._callers: OrderedDict[str, tuple[Caller, str]] = OrderedDict()
        self._links: OrderedDict[str, tuple[Link, bool]] = OrderedDict()

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
            RevokedKey: ``kid`` has been revoked (for ``at`` in the past: revoked before
                ``at``).
        """
        now = time.time()
        await self.check_revoked(kid, at=at, now=now)
        entry = self._certs.get(kid)
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

    def revoked(self, revocation: Revocation) -> None:
        """Record a revocation learnt otherwise (the process's own ``jetmesh keys revoke``)."""
        self._revoked[revocation.kid] = revocation
        self._not_revoked_until.pop(revocation.kid, None)

    async def check_revoked(
        self, kid: str, *, at: float | None = None, now: float | None = None
    ) -> None:
        """Raise RevokedKey when ``kid`` is revoked (before ``at``, when given).

        Raises:
            RevokedKey: ``kid`` is revoked.
        """
        revocation = self._revoked.get(kid)
        if revocation is None and self._revocations is not None:
            now = time.time() if now is None else now
            if self._not_revoked_until.get(kid, 0.0) <= now:
                try:
                    revocation = await self._revocations(kid)
                except Exception as exc:  # keep the last answer; ask again next time
                    log.warning("cannot read the revocation of %s: %s", kid, exc)
                else:
                    if revocation is None:
                        self._not_revoked_until[kid] = now + self._revocation_ttl
                        self._not_revoked_until.move_to_end(kid)
                        if len(self._not_revoked_until) > self._cache_size:
                            self._not_revoked_until.popitem(last=False)
                    else:
                        self.revoked(revocation)
        if revocation is None or (at is not None and at < revocation.at):
            return
        why = f": {revocation.reason}" if revocation.reason else ""
        raise RevokedKey(f"key {kid} was revoked by {revocation.by} at {revocation.at:.0f}{why}")

    async def caller(self, token: str, *, at: float | None = None) -> Caller:
        """The verified caller of a token, valid at ``at`` (default now).

        Raises:
            InvalidToken: forged, malformed, or minted by a key that is not an ingress.
            ExpiredToken: the token has expired.
            RevokedKey: the key that minted the token has been revoked.
        """
        cached = self._callers.get(token)
        if cached is None:
            kid = token_key_id(token)
            issuer, _ = await self.certificate(kid, at=at)
            caller = verify_token(token, issuer, leeway_s=self._leeway, at=at)
            self._callers[token] = (caller, kid)
            if len(self._callers) > self._cache_size:
                self._callers.popitem(last=False)
        else:
            caller, kid = cached
            await self.check_revoked(kid, at=at)
        if caller.expires + self._leeway < (time.time() if at is None else at):
            raise ExpiredToken(f"caller token {caller.token_id} expired at {caller.expires:.0f}")
        return caller

    async def link(self, text: str, *, at: float | None = None) -> tuple[Link, bool]:
        """A verified delegation link, and whether its signer is an ingress.

        Raises:
            BadDelegation: unreadable, forged, or naming another role than its signer.
            UnknownKey, ExpiredKey, RevokedKey: as :meth:`certificate`, for its signer.
        """
        cached = self._links.get(text)
        if cached is not None:
            await self.check_revoked(cached[0].kid, at=at)
            return cached
        kid = link_key_id(text)
        cert, verify_key = await self.certificate(kid, at=at)
        verified = _owned(decode_link(text, kid, verify_key), cert)
        self._links[text] = verified
        if len(self._links) > self._cache_size:
            self._links.popitem(last=False)
        return verified

    async def delegation(
        self, task: Envelope, caller: Caller, *, signer: Certificate, at: float | None = None
    ) -> Delegation:
        """Verify ``task``'s delegation chain (see :mod:`jetmesh.identity.delegation`);
        ``signer`` is the certificate whose key signed the task.

        The last link, when made with the task's own signing key (the usual case: the
        sender hands the task on), is covered by the task's signature and is read without
        checking its own; the hops after this one check it.

        Raises:
            BadDelegation, WidenedDelegation, ExpiredToken: as
                :func:`~jetmesh.identity.delegation.check_chain`.
            UnknownKey, ExpiredKey, RevokedKey: a link's signer.
        """
        verified = [await self.link(text, at=at) for text in task.chain[:-1]]
        if task.chain:
            last = task.chain[-1]
            kid = link_key_id(last)
            if kid == signer.kid:
                verified.append(_owned(read_link(last, kid), signer))
            else:
                verified.append(await self.link(last, at=at))
        return check_chain(
            task.chain,
            [link for link, _ in verified],
            ingress=bool(verified) and verified[0][1],
            token=task.caller,
            caller=caller,
            workflow=task.workflow,
            step=task.step,
            sender=task.sender,
            sender_ingress=signer.ingress,
            to=task.to,
            at=time.time() if at is None else at,
            leeway_s=self._leeway,
        )


def _owned(link: Link, cert: Certificate) -> tuple[Link, bool]:
    """``link`` and whether its signer is an ingress, if it names its signing key's owner.

    Raises:
        BadDelegation: the link names another role.
    """
    if link.by != cert.name:
        raise BadDelegation(f"a link naming {link.by} is signed with {cert.name}'s key")
    return link, cert.ingress
