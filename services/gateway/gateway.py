"""The gateway's lifecycle: its ingress client on the mesh, its authenticator and limits,
and the directory of the agents it exposes.

Example:
    >>> gateway = Gateway(GatewaySettings(), MeshSettings())          # doctest: +SKIP
    >>> async with gateway:                                            # doctest: +SKIP
    ...     app = create_app(gateway)
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from jetmesh import ConfigError, KeyStore, MeshClient, MeshSettings, Subjects

from .auth import Authenticator, JwksKeys
from .directory import Directory
from .door import Door
from .limits import RateLimits
from .settings import GatewaySettings
from .webhooks import Webhooks


class Gateway:
    """One replica of the gateway: started once, closed once (both safe to repeat)."""

    def __init__(
        self,
        settings: GatewaySettings,
        mesh_settings: MeshSettings,
        *,
        jwks: JwksKeys | None = None,
    ) -> None:
        self.settings = settings
        self.mesh_settings = mesh_settings
        self.auth = Authenticator(settings, jwks)
        self.limits = RateLimits(rate_per_s=settings.rate_per_s, burst=settings.burst)
        self._mesh: MeshClient | None = None
        self._door: Door | None = None
        self._directory: Directory | None = None
        self._webhooks: Webhooks | None = None

    @property
    def door(self) -> Door:
        if self._door is None:
            raise ConfigError("the gateway is not started")
        return self._door

    @property
    def directory(self) -> Directory:
        """The agents this gateway exposes and their descriptions (one cache, shared by
        the MCP and A2A doors)."""
        if self._directory is None:
            raise ConfigError("the gateway is not started")
        return self._directory

    @property
    def webhooks(self) -> Webhooks:
        if self._webhooks is None:
            raise ConfigError("the gateway is not started")
        return self._webhooks

    @property
    def ready(self) -> bool:
        """Connected to NATS as its role."""
        return self._mesh is not None and self._mesh.nc.is_connected

    async def start(self) -> Self:
        """Connect to the mesh as the gateway's ingress role (its certificate must be an
        ingress one: see services/gateway/policy.toml).

        Raises:
            ConfigError: no identity for the role, or it is not an ingress.
            NotProvisioned: the admin step has not issued the role's certificate.
        """
        if self._mesh is not None:
            return self
        ms = self.mesh_settings
        store = KeyStore(ms.resolved_keys_dir)
        identity = store.ensure(
            self.settings.role,
            subjects=Subjects(ms.subject_prefix),
            ttl_s=ms.cert_ttl_s,
            ingress=True,
        )
        mesh = MeshClient(ms, identity, roots=store.roots())
        if not mesh.certificate.ingress:
            raise ConfigError(f"{identity.name} is not an ingress role; it cannot mint tokens")
        await mesh.start()
        self._mesh = mesh
        self._door = Door(mesh, self.settings)
        self._directory = Directory(self._door)
        self._webhooks = Webhooks(self._door, self.settings)
        return self

    async def close(self) -> None:
        if self._webhooks is not None:
            webhooks, self._webhooks = self._webhooks, None
            await webhooks.close()
        if self._mesh is not None:
            mesh, self._mesh, self._door, self._directory = self._mesh, None, None, None
            await mesh.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
