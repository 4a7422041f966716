"""The admin step: everything a role uses on the servers but may not make.

On servers that enforce the policy (``jetmesh up``), a role's NATS user cannot create a
stream or a consumer, nor write the registry: subscribe permissions do not limit what a
JetStream consumer delivers, so consumers are made here, each with its role's filter
subject. Connected as the ``admin`` user, :func:`provision`

1. declares the streams (tasks, events, dead letters, max-deliveries advisories);
2. creates every agent role's durable consumers (tasks and advisories) with the same
   configuration a replica on open servers declares for itself, and updates existing
   ones to it (AckWait, max deliveries, max ack pending: replicas connected as their role
   cannot, so a changed setting takes effect when this step runs again), then reads each
   task consumer as the server holds it after (:class:`~jetmesh.bus.streams.TaskConsumer`,
   printed by the command);
3. declares the registry bucket;
4. issues each role's certificate from the policy (its subjects, scopes and ingress flag;
   a valid certificate that already says so is kept) and puts it in the registry;
5. switches on again the Redis users of roles shut out when their key was revoked
   (:func:`jetmesh.shutout.let_in`), once their current key is not revoked;
6. as Redis's admin user, loads the mesh's function library (roles may only call it) and
   sets the memory limit (:func:`jetmesh.memory.admin.provision_redis`).

Every part is idempotent: running it twice changes nothing the first run made, except
certificates close to expiry, which are renewed. :func:`bring_up` is ``jetmesh up``:
the users generated from the policy, the embedded servers started with them, then this.

Example:
    >>> done = await provision(settings, default_policy())             # doctest: +SKIP
    >>> done.consumers[0]                                              # doctest: +SKIP
    ('MESH_TASKS', 'billing')
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial

from redis.exceptions import RedisError

from ._exceptions import ConfigError, RejectedMessage
from .addresses import Subjects
from .bus.connection import connect
from .bus.streams import (
    TaskConsumer,
    advisories_stream,
    await_jetstream,
    ensure_consumer,
    ensure_registry,
    ensure_streams,
    stream_configs,
    through_elections,
)
from .embedded import EmbeddedStack, StackStatus
from .identity.certificates import verify_certificate
from .identity.keystore import RENEW_BEFORE_S, Identity, KeyStore
from .logins import admin_login
from .memory.admin import RedisProvisioned, provision_redis
from .memory.connection import connect as connect_redis
from .memory.connection import without_userinfo
from .policy.derive import RolePermissions, role_permissions
from .policy.model import Policy
from .policy.servers import ServerAuth
from .settings import MeshSettings
from .shutout import let_in

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Provisioned:
    """What :func:`provision` made sure of."""

    streams: tuple[str, ...]
    consumers: tuple[tuple[str, str], ...]
    """(stream, consumer) pairs."""
    registry: str
    certificates: tuple[tuple[str, str], ...]
    """(role, key id) of every role's certificate in the registry."""
    readmitted: tuple[str, ...] = ()
    """Roles whose Redis user, off since their key was revoked, was switched on again."""
    redis: RedisProvisioned | None = None
    """The function library and the memory limit in Redis."""
    task_consumers: tuple[TaskConsumer, ...] = ()
    """Each agent role's task consumer as the server holds it after the step, by role."""


def certificate_subjects(perms: RolePermissions, subjects: Subjects) -> tuple[list[str], list[str]]:
    """The subjects a role's certificate names: what receivers let it publish (tasks to its
    callees, replies to its callers, events, its dead letters, the policy's extras) and what
    it subscribes to (its tasks and its replies). The JetStream API and service API (``$SRV``)
    subjects of its server user are the servers' business, not the receivers'."""
    publish = [s for s in perms.publish if not s.startswith("$")]
    subscribe = [s for s in perms.subscribe if not s.startswith(("_INBOX.", "$"))]
    if perms.consume is not None:
        subscribe.insert(0, perms.consume)
    return publish, subscribe


def _current(
    store: KeyStore, role: str, publish: list[str], subscribe: list[str], perms: RolePermissions
) -> Identity | None:
    """``role``'s identity if its certificate already says what the policy says and is
    not about to expire."""
    try:
        identity = store.identity(role)
        cert = verify_certificate(identity.certificate, store.roots())
    except (ConfigError, RejectedMessage, OSError):
        return None
    same = (
        list(cert.publish) == publish
        and list(cert.subscribe) == subscribe
        and cert.scopes == perms.scopes
        and cert.ingress == perms.ingress
    )
    return identity if same and cert.expires - time.time() > RENEW_BEFORE_S else None


def issue_from_policy(
    store: KeyStore, policy: Policy, role: str, settings: MeshSettings
) -> Identity:
    """``role``'s key and a certificate with the policy's subjects, scopes and ingress
    flag, kept when a valid one says so already, else issued by the root in ``store``.

    Raises:
        ConfigError: ``role`` is not in the policy, or ``store`` has no root key.
    """
    perms = role_permissions(policy, role, settings)
    publish, subscribe = certificate_subjects(perms, Subjects(settings.subject_prefix))
    kept = _current(store, role, publish, subscribe, perms)
    if kept is not None:
        return kept
    return store.issue(
        role,
        subjects=Subjects(settings.subject_prefix),
        ttl_s=settings.cert_ttl_s,
        scopes=sorted(perms.scopes),
        ingress=perms.ingress,
        publish=publish,
        subscribe=subscribe,
    )


async def provision(
    settings: MeshSettings, policy: Policy, *, store: KeyStore | None = None
) -> Provisioned:
    """Connect as ``admin`` and make the streams, every role's consumers, the registry and
    the certificates (see the module's docstring). Idempotent.

    Args:
        settings: the servers, stream and bucket names, consumer limits.
        policy: the roles.
        store: where the root key and the roles' keys are (default: the keys directory).

    Raises:
        ConfigError: no root key to issue certificates with, or Redis unreachable.
        nats.errors.NoServersError: nats-server does not answer.
    """
    store = store if store is not None else KeyStore(settings.resolved_keys_dir)
    store.init_root()
    nc = await connect(
        settings.nats_url,
        "admin/provision",
        allow_reconnect=False,
        connect_timeout=CONNECT_TIMEOUT_S,
        **admin_login(settings).nats_options(),
    )
    try:
        # Each request is asked again while a cluster elects a leader (a node just died or
        # came back): every step is idempotent.
        js = nc.jetstream()
        await await_jetstream(js)
        await through_elections(lambda: ensure_streams(js, settings))
        consumers: list[tuple[str, str]] = []
        task_consumers: list[TaskConsumer] = []
        for agent in policy.agents:
            task_consumers.append(
                await through_elections(partial(ensure_consumer, js, settings, agent))
            )
            consumers += [(settings.tasks_stream, agent), (advisories_stream(settings), agent)]
        registry = await through_elections(lambda: ensure_registry(js, settings))
        issued: list[tuple[str, str]] = []
        for role in sorted(policy.roles):
            identity = issue_from_policy(store, policy, role, settings)
            cert = identity.certificate.encode()
            await through_elections(partial(registry.put, identity.key.kid, cert))
            issued.append((role, identity.key.kid))
        readmitted = await through_elections(
            lambda: let_in(settings, policy, registry, dict(issued))
        )
    finally:
        await nc.close()
    redis = await _provision_redis(settings)
    return Provisioned(
        streams=tuple(c.name for c in stream_configs(settings) if c.name),
        consumers=tuple(consumers),
        registry=settings.registry_bucket,
        certificates=tuple(issued),
        readmitted=readmitted,
        redis=redis,
        task_consumers=tuple(sorted(task_consumers, key=lambda c: c.role)),
    )


async def _provision_redis(settings: MeshSettings) -> RedisProvisioned:
    """Redis's part of the admin step, as its admin user.

    Raises:
        ConfigError: Redis is unreachable, or refused the admin.
    """
    redis = connect_redis(settings.redis_url, retry_s=5.0, **admin_login(settings).redis_options())
    try:
        return await provision_redis(redis, settings)
    except RedisError as exc:
        raise ConfigError(f"Redis at {without_userinfo(settings.redis_url)}: {exc}") from exc
    finally:
        await redis.aclose()


@dataclass(frozen=True)
class Up:
    """What :func:`bring_up` did."""

    status: StackStatus
    provisioned: Provisioned | None
    """None on open servers (nothing to provision: every process declares for itself)."""


async def bring_up(settings: MeshSettings, policy: Policy | None) -> Up:
    """``jetmesh up``: the root key; with ``policy``, every role's users generated into the
    keys directory (:class:`~jetmesh.policy.servers.ServerAuth`), nats-server and
    redis-server started with them, then :func:`provision`. With None, open servers
    (development only: every client is the servers' default user).

    Servers that already answer at the configured URLs are reused as they run. The
    command line's edge runs it: :func:`jetmesh.cli.servers.up_servers`.

    Raises:
        ServerStartError: a server did not come up.
        ConfigError: provisioning failed (the servers stay up: run it again with
            ``jetmesh admin provision``).
    """
    KeyStore(settings.resolved_keys_dir).init_root()
    if policy is None:
        return Up(await asyncio.to_thread(EmbeddedStack(settings).up), None)
    auth = ServerAuth.generate(policy, settings)
    status = await asyncio.to_thread(EmbeddedStack(settings, auth=auth).up)
    return Up(status, await provision(settings, policy))
