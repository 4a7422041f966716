"""The trust store: root keys, verified certificates and caller tokens, cached.

Certificates are looked up by key id in the registry (a JetStream key-value bucket),
verified once against the mesh root, and cached; expiry is re-checked on every use.
Caller tokens and delegation links are verified once per distinct text and cached the
same way; every use of a cached one goes through its signer's certificate again (expiry,
revocation, re-issue), so neither outlives the certificate that vouched for it.

Three answers are kept for a short time, and asked again when it has passed:

- "not revoked" (``revoked.<kid>`` in the registry), for ``revocation_ttl_s`` (1 s): a
  revocation takes effect in every process within 1 s plus one registry read, even for a
  certificate cached long before. A "revoked" answer is kept for good.
- a cached certificate, for ``certificate_ttl_s`` (1 s): its registry entry is read again,
  and a certificate re-issued for the same key id (publish subjects, scopes or the
  ingress flag changed, a shorter expiry) replaces it within 1 s plus one registry read;
  caller tokens and links verified with the old one are checked again with the new one
  (a caller token whose issuer lost its ingress flag is refused), and a removed entry
  makes the key unknown.
- "no certificate under this key id", for ``NEGATIVE_TTL_S`` (1 s), in a cache of at
  most ``MISSING_CACHE_SIZE`` key ids (least recently missed first out).

When the registry cannot be read, the last answer is kept and asked again on the next use.

A key id is checked for its form (``<owner>-<16 hex digits>``) before any look-up: a
malformed ``Mesh-Key`` costs no registry read, an unknown one a single read (the
certificate's; revocation is asked only of known keys), and errors show such values
escaped and cut (:func:`~jetmesh.identity.untrusted.shown`). The look-ups are direct gets
(no consumer), so they need only the registry's read permissions that every role has.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from nacl.signing import VerifyKey

from .._exceptions import (
    BadDelegation,
    ExpiredKey,
    ExpiredToken,
    RegistryUnavailable,
    RevokedKey,
    UnknownKey,
)
from ..envelope import Envelope
from .certificates import Certificate, verify_certificate
from .delegation import (
    Delegation,
    Link,
    OpenedLink,
    check_chain,
    decode_link,
    open_link,
    read_link,
)
from .keys import is_key_id
from .revocation import Revocation
from .tokens import Caller, token_key_id, verify_token
from .untrusted import shown

log = logging.getLogger("jetmesh.identity.trust")

CertificateLookup = Callable[[str], Awaitable[str | None]]
"""Returns the certificate JWT registered under a key id, None when there is none; raises
when the registry cannot be read."""

RevocationLookup = Callable[[str], Awaitable[Revocation | None]]
"""Returns the revocation record of a key id, None when it is not revoked; raises when the
registry cannot be read."""

DEFAULT_CACHE_SIZE = 4096
MISSING_CACHE_SIZE = 1024
"""Most key ids remembered as having no certificate."""
NEGATIVE_TTL_S = 1.0
"""How long "no certificate under this key id" is kept."""
REVOCATION_TTL_S = 1.0
"""How long a "not revoked" answer is trusted: the longest a revocation takes to reach a
process that already verified the key."""
CERTIFICATE_TTL_S = 1.0
"""How long a cached certificate is used before its registry entry is read again: the
longest a certificate re-issued for the same key id takes to reach a process that cached
the old one."""


class _Cached:
    """A verified certificate, its verify key, and when to read its registry entry again."""

    __slots__ = ("certificate", "recheck_at", "verify_key")

    def __init__(self, certificate: Certificate, recheck_at: float) -> None:
        self.certificate = certificate
        self.verify_key = VerifyKey(certificate.public_key)
        self.recheck_at = recheck_at


class TrustStore:
    """Verifies and caches certificates, caller tokens and links for one process."""

    def __init__(
        self,
        roots: Mapping[str, bytes],
        lookup: CertificateLookup,
        *,
        leeway_s: float = 5.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
        revocations: RevocationLookup | None = None,
        revocation_ttl_s: float = REVOCATION_TTL_S,
        certificate_ttl_s: float = CERTIFICATE_TTL_S,
    ) -> None:
        self.roots = dict(roots)
        self._lookup = lookup
        self._revocations = revocations
        self._revocation_ttl = revocation_ttl_s
        self._certificate_ttl = certificate_ttl_s
        self._not_revoked_until: OrderedDict[str, float] = OrderedDict()
        self._revoked: dict[str, Revocation] = {}
        self._leeway = leeway_s
        self._cache_size = cache_size
        self._certs: OrderedDict[str, _Cached] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._callers: OrderedDict[str, tuple[Caller, Certificate]] = OrderedDict()
        """Verified caller tokens, with the issuer's certificate they were verified with."""
        self._links: OrderedDict[str, tuple[Link, Certificate]] = OrderedDict()
        """Verified links, with the signer's certificate they were verified with."""

    def add(self, certificate_jwt: str) -> Certificate:
        """Verify a certificate and put it in the cache (used for a process's own cert)."""
        cert = verify_certificate(certificate_jwt, self.roots, leeway_s=self._leeway)
        self._remember(cert, time.time())
        return cert

    def _remember(self, cert: Certificate, now: float) -> _Cached:
        cached = _Cached(cert, now + self._certificate_ttl)
        self._certs[cert.kid] = cached
        self._certs.move_to_end(cert.kid)
        self._missing.pop(cert.kid, None)
        if len(self._certs) > self._cache_size:
            self._certs.popitem(last=False)
        return cached

    async def certificate(
        self, kid: str, *, at: float | None = None
    ) -> tuple[Certificate, VerifyKey]:
        """The verified certificate for ``kid`` and its verify key, valid at ``at``.

        Raises:
            UnknownKey: ``kid`` is not a key id, or no certificate is registered under it
                (any more).
            UntrustedCertificate: the registered certificate is not from a trusted root.
            ExpiredKey: the certificate has expired.
            RevokedKey: ``kid`` has been revoked (for ``at`` in the past: revoked before
                ``at``).
        """
        now = time.time()
        cached = self._certs.get(kid)
        if cached is None:
            cached = await self._load(kid, at, now)
        elif cached.recheck_at <= now:
            cached = await self._reread(kid, cached, at, now)
        await self.check_revoked(kid, at=at, now=now)
        cert = cached.certificate
        when = now if at is None else at
        if cert.expires + self._leeway < when:
            raise ExpiredKey(f"certificate {kid} expired at {cert.expires:.0f}")
        return cert, cached.verify_key

    async def _load(self, kid: str, at: float | None, now: float) -> _Cached:
        """Read and verify ``kid``'s certificate: one registry read at most, none for a
        malformed key id or one missed less than ``NEGATIVE_TTL_S`` ago."""
        if not is_key_id(kid):
            raise UnknownKey(f"malformed key id {shown(kid)}")
        if self._missing.get(kid, 0.0) > now:
            raise UnknownKey(f"no certificate for key id {kid!r}")
        try:
            token = await self._lookup(kid)
        except Exception as exc:
            raise RegistryUnavailable(
                f"cannot read the certificate of {kid}: {shown(exc, 200)}"
            ) from None
        if token is None:
            self._missed(kid, now)
            raise UnknownKey(f"no certificate for key id {kid!r}")
        return self._remember(self._verified(kid, token, at), now)

    def _missed(self, kid: str, now: float) -> None:
        self._missing[kid] = now + NEGATIVE_TTL_S
        self._missing.move_to_end(kid)
        if len(self._missing) > MISSING_CACHE_SIZE:
            self._missing.popitem(last=False)

    async def _reread(self, kid: str, cached: _Cached, at: float | None, now: float) -> _Cached:
        """``kid``'s registry entry read again: the cached certificate while it is the
        same (or the registry cannot be read), the new one when it was re-issued.

        Raises:
            UnknownKey: the entry was removed; UntrustedCertificate, ExpiredKey: the new
                certificate is not valid (the key is then forgotten).
        """
        cached.recheck_at = now + self._certificate_ttl  # concurrent uses keep the cached one
        try:
            token = await self._lookup(kid)
        except Exception as exc:
            log.warning("cannot read the certificate of %s again: %s", kid, shown(exc, 200))
            return cached
        if token == cached.certificate.token:
            return cached
        self._certs.pop(kid, None)
        if token is None:
            self._missed(kid, now)
            raise UnknownKey(f"the certificate of {kid} was removed from the registry")
        cert = self._verified(kid, token, at)
        log.info("certificate of %s re-issued: read again", kid)
        return self._remember(cert, now)

    def _verified(self, kid: str, token: str, at: float | None) -> Certificate:
        cert = verify_certificate(
            token, self.roots, leeway_s=self._leeway, at=at, check_not_before=at is None
        )
        if cert.kid != kid:
            raise UnknownKey(f"registry entry {kid!r} holds a certificate for {cert.kid!r}")
        return cert

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

        A cached token is checked again on every use: its issuer's certificate (expired,
        revoked, re-issued: then the token is verified again with the new one) and its own
        expiry.

        Raises:
            InvalidToken: forged, malformed, or minted by a key that is not an ingress.
            ExpiredToken: the token has expired.
            UnknownKey, ExpiredKey, RevokedKey: as :meth:`certificate`, for its issuer.
        """
        cached = self._callers.get(token)
        if cached is None:
            issuer, _ = await self.certificate(token_key_id(token), at=at)
            caller = verify_token(token, issuer, leeway_s=self._leeway, at=at)
            self._callers[token] = (caller, issuer)
            if len(self._callers) > self._cache_size:
                self._callers.popitem(last=False)
        else:
            caller, verified_with = cached
            issuer, _ = await self.certificate(verified_with.kid, at=at)
            if issuer is not verified_with:
                self._callers.pop(token, None)
                caller = verify_token(token, issuer, leeway_s=self._leeway, at=at)
                self._callers[token] = (caller, issuer)
        if caller.expires + self._leeway < (time.time() if at is None else at):
            raise ExpiredToken(f"caller token {caller.token_id} expired at {caller.expires:.0f}")
        return caller

    async def link(self, text: str, *, at: float | None = None) -> tuple[Link, bool]:
        """A verified delegation link, and whether its signer is an ingress.

        A cached link is checked again on every use against its signer's certificate
        (expired, revoked, re-issued).

        Raises:
            BadDelegation: unreadable, forged, or naming another role than its signer.
            UnknownKey, ExpiredKey, RevokedKey: as :meth:`certificate`, for its signer.
        """
        cached = self._links.get(text)
        if cached is None:
            return await self._verify_link(open_link(text), at)
        link, verified_with = cached
        cert, verify_key = await self.certificate(link.kid, at=at)
        if cert is verified_with:
            return link, cert.ingress
        self._links.pop(text, None)
        if cert.public_key != verified_with.public_key:
            link = decode_link(open_link(text), verify_key)
        owned = _owned(link, cert)
        self._links[text] = (link, cert)
        return owned

    async def _verify_link(self, opened: OpenedLink, at: float | None) -> tuple[Link, bool]:
        cert, verify_key = await self.certificate(opened.kid, at=at)
        link, ingress = _owned(decode_link(opened, verify_key), cert)
        self._links[opened.text] = (link, cert)
        if len(self._links) > self._cache_size:
            self._links.popitem(last=False)
        return link, ingress

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
            if last in self._links:
                verified.append(await self.link(last, at=at))
            elif (opened := open_link(last)).kid == signer.kid:
                verified.append(_owned(read_link(opened), signer))
            else:
                verified.append(await self._verify_link(opened, at))
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
