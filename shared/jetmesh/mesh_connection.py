"""A process's connection to the mesh's servers under one identity, and what it checks.

:class:`MeshConnection` connects to NATS (and Redis on first use), joins the registry of
certificates, and holds the trust store and the verifier that every received or stored
message goes through (:meth:`MeshConnection.verify`). It offers the small interface of
:mod:`jetmesh.mesh_protocols` (verify, store, read a stream's stored messages) so that
helpers never reach into its parts. :class:`~jetmesh.MeshClient` builds signed sending and
calls on it.

Example:
    >>> async with MeshClient(settings, identity, roots=roots) as mesh:  # doctest: +SKIP
    ...     caller = await mesh.verify_token(token)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.kv import KeyValue
from redis.asyncio import Redis

from ._exceptions import ConfigError
from .addresses import Subjects
from .bus.connection import connect
from .bus.publisher import NO_STREAM_S, StreamPublisher
from .bus.streams import bind_consumers, ensure_consumer, through_elections
from .envelope import new_id
from .identity.certificates import Certificate
from .identity.keystore import Identity
from .identity.registry import KeyRegistry
from .identity.tokens import Caller
from .identity.trust import TrustStore
from .identity.verifier import Verified, Verifier
from .logins import ServerLogin, role_login
from .memory.connection import connect as connect_redis
from .mesh_protocols import Received
from .runtime.limits import PlanLimits
from .settings import MeshSettings

CLOSE_GRACE_S = 10.0
"""How long closing may take past ``drain_timeout_s`` (the publisher's flush) for the
connection's own drain, before it is closed without one."""

log = logging.getLogger("jetmesh.client")


class MeshConnection:
    """The servers, the registry and the trust of one identity (an agent role or an
    ingress); see the module's docstring."""

    def __init__(
        self,
        settings: MeshSettings,
        identity: Identity,
        *,
        roots: Mapping[str, bytes],
        instance: str | None = None,
        login: ServerLogin | None = None,
    ) -> None:
        """
        Args:
            login: who to be on the servers; by default the role's own when the keys
                directory holds them (``nats/<name>.nk``, ``redis/<name>.pass``), else the
                servers' default user (open servers).
        """
        self.settings = settings
        self.login = login if login is not None else role_login(settings, identity.name)
        self.identity = identity
        self.name = identity.name
        self.instance = instance or new_id().lower()[-10:]
        self.subjects = Subjects(settings.subject_prefix)
        self._keys = KeyRegistry(settings)
        self._trust = TrustStore(
            roots,
            self._keys.certificate,
            leeway_s=settings.clock_skew_s,
            revocations=self._keys.revocation,
        )
        self._verifier = Verifier(
            self._trust,
            self.subjects,
            max_payload_bytes=settings.max_payload_bytes,
            max_age_s=settings.max_message_age_s,
            clock_skew_s=settings.clock_skew_s,
            max_call_depth=PlanLimits.of(settings).max_call_depth,
        )
        self.certificate = self._trust.add(identity.certificate)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._publisher: StreamPublisher | None = None
        self._redis: Redis | None = None
        self._closed = False
        self.reconnect_listeners: list[Callable[[], Awaitable[None]]] = []
        """Coroutines run after the connection comes back (a replica renews its pulls, the
        publisher sends again what was in flight)."""
        self.error_listeners: list[Callable[[Exception], None]] = []
        """Called with each error nats-server reports on this connection (other than a
        refusal of its credentials): add to it while something waits on the answer."""
        self.shut_out = asyncio.Event()
        """Set when nats-server kept refusing this identity's credentials after it had
        connected (its role shut out by ``jetmesh keys revoke``): the connection is closed."""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        """Connect; returns self. Connected as a role (servers that enforce the policy),
        bind to the streams and the registry the admin made and check that this
        identity's certificate is there; otherwise declare the streams and the registry
        and register this identity.

        Raises:
            NotProvisioned: as a role, the registry or this identity's certificate in it is
                missing (run ``jetmesh up``).
            ConfigError: this identity's key id is revoked.
        """
        self._nc = await connect(
            self.settings.nats_url,
            f"{self.name}/{self.instance}",
            on_reconnect=self.reconnect_listeners,
            on_refused=self.shut_out.set,
            error_listeners=self.error_listeners,
            **self.login.nats_options(),
        )
        self._js = self._nc.jetstream()
        js = self._js
        try:
            await through_elections(
                lambda: self._keys.join(js, self.identity, as_role=self.login.is_role)
            )
        except ConfigError:
            await self._nc.close()
            raise
        self._publisher = StreamPublisher(self._nc, batch_prefixes=self._batch_prefixes())
        await self._publisher.start()
        self.reconnect_listeners.append(self._publisher.reconnected)
        return self

    def _batch_prefixes(self) -> tuple[str, ...]:
        """The group commits of this connection's publisher: tasks (``<p>.agent.``: only
        tasks are published to JetStream under it) and events, one stream each."""
        grouped = self.settings.group_commit
        if grouped is None:
            grouped = self.settings.nats_sync_interval == "always"
        if not grouped:
            return ()
        prefix = self.settings.subject_prefix
        return (f"{prefix}.agent.", f"{prefix}.event.")

    async def close(self) -> None:
        """Flush events, drain the connection, close Redis. Safe to call twice.

        The whole close is bounded (:data:`CLOSE_GRACE_S` past ``drain_timeout_s``): past
        it, the NATS connection is closed without draining, so a stopping process always
        ends.
        """
        if self._closed:
            return
        self._closed = True
        bound = self.settings.drain_timeout_s + CLOSE_GRACE_S
        try:
            await asyncio.wait_for(self._flush_and_drain(), bound)
        except TimeoutError:
            log.warning("closing took over %.0f s: the connection closed without draining", bound)
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
        finally:
            if self._redis is not None:
                await self._redis.aclose()

    async def _flush_and_drain(self) -> None:
        if self._publisher is not None:
            await self._publisher.close(timeout=self.settings.drain_timeout_s)
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.drain()
            except Exception as exc:  # closing anyway
                log.debug("drain failed: %s", exc)
                await self._nc.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise ConfigError("MeshClient is not started")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise ConfigError("MeshClient is not started")
        return self._js

    @property
    def publisher(self) -> StreamPublisher:
        if self._publisher is None:
            raise ConfigError("MeshClient is not started")
        return self._publisher

    @property
    def redis(self) -> Redis:
        """The Redis connection for working memory, opened on first use."""
        if self._redis is None:
            self._redis = connect_redis(
                self.settings.redis_url,
                retry_s=self.settings.redis_retry_s,
                **self.login.redis_options(),
            )
        return self._redis

    @property
    def registry(self) -> KeyValue:
        """The registry bucket: certificates by key id, and revocations."""
        return self._keys.bucket

    async def join_consumers(self, agent: str) -> None:
        """Bind ``agent``'s durable consumers (tasks, advisories): as a role, check that
        the admin made them; on open servers, declare them.

        Raises:
            NotProvisioned: as a role, a consumer is missing.
        """
        if self.login.is_role:
            await through_elections(lambda: bind_consumers(self.js, self.settings, agent))
        else:
            await through_elections(lambda: ensure_consumer(self.js, self.settings, agent))

    # -- checking what others signed (mesh_protocols.Verifying) ----------------------------

    async def verify(
        self, msg: Received, *, stored_at: float | None, audit: bool = False
    ) -> Verified:
        """Verify a received or stored message (see
        :class:`~jetmesh.identity.verifier.Verifier`): the one path every message takes."""
        return await self._verifier.verify(
            msg.subject, msg.data, msg.headers, stored_at=stored_at, audit=audit
        )

    async def verify_token(self, token: str) -> Caller:
        """The verified caller of a caller token.

        Raises:
            InvalidToken, ExpiredToken, RevokedKey: ``token`` does not verify.
        """
        return await self._trust.caller(token)

    async def certificate_of(self, key_id: str) -> Certificate:
        """The verified certificate of the key ``key_id``, valid now.

        Raises:
            RejectedMessage: no valid certificate for it (unknown, expired, revoked).
        """
        certificate, _ = await self._trust.certificate(key_id)
        return certificate

    # -- streams (mesh_protocols.Storing, bus.direct.MessageStore) -------------------------

    async def store(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        *,
        no_stream_s: float | None = None,
    ) -> None:
        """Publish ``data`` as it is and wait until a stream stored it (see
        :meth:`~jetmesh.bus.publisher.StreamPublisher.publish`)."""
        wait = NO_STREAM_S if no_stream_s is None else no_stream_s
        await self.publisher.publish(subject, data, headers, no_stream_s=wait)

    async def get_msg(
        self,
        stream_name: str,
        seq: int | None = None,
        subject: str | None = None,
        direct: bool | None = False,
        next: bool | None = False,
    ) -> RawStreamMsg:
        """One stored message of ``stream_name`` (JetStream's ``get_msg``).

        Raises:
            nats.js.errors.NotFoundError: there is none.
        """
        return await self.js.get_msg(
            stream_name, seq=seq, subject=subject, direct=direct, next=next
        )

    async def delete_msg(self, stream_name: str, seq: int) -> bool:
        """Remove message ``seq`` from ``stream_name``."""
        return await self.js.delete_msg(stream_name, seq)
