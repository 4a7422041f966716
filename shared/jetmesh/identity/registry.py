"""The key registry as one process uses it: the ``MESH_KEYS`` bucket that holds every
certificate by key id and every revocation (``revoked.<kid>``).

A process joins it when it starts. Connected as a role (servers that enforce the policy),
it binds to the bucket the admin made and checks its own certificate is there, put by the
admin step; connected as the servers' default user (development), it declares the streams
and the bucket and registers its certificate itself. Either way it refuses to start with a
revoked key. The trust store then reads certificates and revocations through it, by direct
get (no consumer).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from .._exceptions import ConfigError, NotProvisioned
from ..bus.streams import PROVISION_HINT, bind_registry, ensure_registry, ensure_streams
from ..settings import MeshSettings
from .keystore import Identity
from .revocation import Revocation, lookup_revocation, refuse_if_revoked


class KeyRegistry:
    """The registry bucket of one process; empty until :meth:`join`."""

    def __init__(self, settings: MeshSettings) -> None:
        self.settings = settings
        self._bucket: KeyValue | None = None

    @property
    def bucket(self) -> KeyValue:
        if self._bucket is None:
            raise ConfigError("MeshClient is not started")
        return self._bucket

    async def join(self, js: JetStreamContext, identity: Identity, *, as_role: bool) -> None:
        """Bind to the bucket (``as_role``) or declare it and the streams, and make sure
        ``identity`` may take part.

        Raises:
            NotProvisioned: as a role, the bucket or ``identity``'s certificate is missing.
            ConfigError: ``identity``'s key id is revoked.
        """
        kid = identity.key.kid
        if as_role:
            self._bucket = await bind_registry(js, self.settings)
            if await self.certificate(kid) is None:
                raise NotProvisioned(
                    f"the certificate of {identity.name} (key {kid}) is not in the registry "
                    f"{self.settings.registry_bucket}; {PROVISION_HINT}"
                )
        else:
            await ensure_streams(js, self.settings)
            self._bucket = await ensure_registry(js, self.settings)
        await refuse_if_revoked(self._bucket, identity.name, kid)
        if not as_role:
            await self._bucket.put(kid, identity.certificate.encode())

    async def certificate(self, kid: str) -> str | None:
        """The certificate registered under ``kid`` (None: none, or not joined yet);
        raises when the bucket cannot be read (which is not the same as "none")."""
        if self._bucket is None:
            return None
        try:
            entry = await self._bucket.get(kid)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        return entry.value.decode() if entry.value else None

    async def revocation(self, kid: str) -> Revocation | None:
        """``kid``'s revocation (None: not revoked, or not joined yet); raises when the
        bucket cannot be read."""
        if self._bucket is None:
            return None
        return await lookup_revocation(self._bucket, kid)
