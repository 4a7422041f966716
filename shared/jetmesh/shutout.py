"""Shutting a role out of both servers when its key is revoked, and letting it back in.

A revoked key makes every receiver refuse what it signs, but whoever holds a role's
secrets also holds its nkey seed and its Redis password, and could still write Redis and
publish on NATS. :func:`shut_out`, as the admin, takes those away:

- **Redis**: the role's ACL user is switched off with a new password (``ACL SETUSER <role>
  off resetpass >new``), written to the server's ACL file when it has one (``ACL SAVE``),
  and its open connections are closed (``CLIENT KILL USER <role>``);
- **NATS**: the role gets a new nkey seed (the old one is overwritten, kept nowhere), the
  users are generated again from the policy and the nats-server that ``jetmesh up``
  started reloads them (SIGHUP): the old nkey is gone, the server closes its connections
  and refuses new ones with ``Authorization Violation``. :func:`shut_out` returns once a
  connection with the old seed is refused.

A nats-server not started here cannot be reloaded from here: the users configuration is
written to ``<state_dir>/nats-users.conf`` and :attr:`ShutOut.pending` says what the
operator must do.

:func:`let_in` (the admin step, ``jetmesh up`` and ``jetmesh admin provision``) switches a
shut-out role's Redis user on again, with the password in the keys directory, once the
role's current key is not revoked (after ``jetmesh keys rotate``). Its NATS user already
has the new seed.

Example:
    >>> done = await shut_out(settings, policy, "kb")                   # doctest: +SKIP
    >>> done.pending                                                    # doctest: +SKIP
    ()
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nkeys
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ._exceptions import ConfigError
from .bus.connection import AUTH_REFUSED
from .embedded import EmbeddedStack
from .embedded.sentinel import role_user_rules
from .identity.keys import write_secret
from .identity.keystore import KeyStore
from .identity.revocation import lookup_revocation
from .logins import admin_login, nats_seed_file, redis_password_file
from .memory.nodes import data_nodes, sentinels
from .policy.model import Policy
from .policy.servers import ServerAuth
from .settings import MeshSettings

log = logging.getLogger("jetmesh.shutout")

SHUT_OUT_WITHIN_S = 1.0
"""The stated time: from the revocation stored to both servers refusing the role's old
secrets (its NATS and Redis connections closed, new ones refused), on servers ``jetmesh
up`` started. Measured at 0.01 to 0.03 s (docs/security.md,
tests/test_shut_out.py)."""

REFUSAL_TIMEOUT_S = 5.0
"""How long :func:`shut_out` waits for nats-server to refuse the old seed after SIGHUP
(it does in milliseconds; longer means the reload failed, see the server's log)."""

_POLL_S = 0.02


@dataclass(frozen=True)
class ShutOut:
    """What :func:`shut_out` did to one role on each server."""

    role: str
    redis: str
    """What happened on Redis, as a line for people."""
    nats: str
    """What happened on nats-server, as a line for people."""
    pending: tuple[str, ...] = field(default=())
    """Steps left to the operator (a server not started here); empty when both servers
    refuse the role's old secrets."""
    seconds: float = 0.0
    """From the start of :func:`shut_out` to both servers refusing the old secrets."""

    @property
    def complete(self) -> bool:
        """Both servers refuse the role's old secrets."""
        return not self.pending


def planned_rotation(store: KeyStore, role: str, kid: str) -> bool:
    """Whether ``kid`` is an old key of ``role``: the keys directory holds another current
    key for it, as ``jetmesh keys rotate`` leaves it. Revoking such a key is the end of a
    planned rotation and keeps the role's server users, which its new replicas use.

    Args:
        store: the keys directory.
        role: the key's owner.
        kid: the revoked key id.
    """
    try:
        return store.identity(role).key.kid != kid
    except (ConfigError, OSError):  # no current key here: treat kid as the current one
        return False


async def shut_out(
    settings: MeshSettings,
    policy: Policy,
    role: str,
    *,
    timeout: float = REFUSAL_TIMEOUT_S,
) -> ShutOut:
    """Take ``role``'s server secrets away: its Redis user off with a new password and its
    connections closed; a new nkey, reloaded into the nats-server ``jetmesh up`` started.
    See the module's docstring.

    Args:
        settings: the servers, the keys and state directories.
        policy: the policy the servers' users are generated from; ``role`` is one of it.
        role: the role to shut out.
        timeout: how long to wait for nats-server to refuse the old seed after reloading.

    Raises:
        ConfigError: ``role`` is not in ``policy``; the servers have no users here (no
            admin credentials in the keys directory: open servers); Redis refused or did
            not answer the admin; or nats-server still accepted the old seed after
            ``timeout`` (its reload failed).
    """
    started = time.monotonic()
    if role not in policy.roles:
        raise ConfigError(f"{role!r} is not a role of the policy: it has no server users")
    admin = admin_login(settings)
    if admin.user is None:
        raise ConfigError(
            f"no admin credentials in {settings.resolved_keys_dir}: servers without users "
            "(jetmesh up --open) have none to shut out"
        )
    redis_line, pending = await _redis_off(settings, role)
    nats_line, nats_pending = await _nats_new_key(settings, policy, role, timeout)
    return ShutOut(
        role, redis_line, nats_line, (*pending, *nats_pending), time.monotonic() - started
    )


async def let_in(
    settings: MeshSettings, policy: Policy, registry: KeyValue, current: Mapping[str, str]
) -> tuple[str, ...]:
    """Switch on again the Redis users that :func:`shut_out` switched off, of the roles
    whose current key is not revoked, with the rules and the password generated from the
    policy and the keys directory. Users that are on are left alone.

    Args:
        settings: the servers and the keys directory.
        policy: the roles.
        registry: where revocations are.
        current: each role's current key id (as the admin step registered it).

    Returns:
        The roles switched on. Nothing without admin credentials (open servers), or
        when Redis does not answer (logged: the users stay off).
    """
    admin = admin_login(settings)
    if admin.redis_password is None:
        return ()
    options = admin.redis_options()
    nodes: list[Redis] = []
    try:
        nodes = await data_nodes(settings.redis_url, **options)
        off = {
            role
            for role in policy.agents
            if role in current
            for n in nodes
            if await _is_off(n, role)
        }
        off = {role for role in off if await lookup_revocation(registry, current[role]) is None}
        if not off:
            return ()
        auth = ServerAuth.generate(policy, settings)
        for node in nodes:
            for role in sorted(off):
                await _setuser(node, auth.redis_user(role).setuser_args())
            await _save_acl(node)
        await _on_sentinels(
            settings,
            {role: ["resetpass", *role_user_rules(auth.redis_user(role).password)] for role in off},
        )
    except RedisError as exc:
        log.warning("shut-out Redis users left off: Redis at %s: %s", settings.redis_url, exc)
        return ()
    finally:
        for node in nodes:
            await node.aclose()
    return tuple(sorted(off))


async def _is_off(redis: Redis, role: str) -> bool:
    user = await redis.acl_getuser(role)
    flags = user["flags"] if user is not None else []
    return isinstance(flags, list) and "off" in flags


async def _setuser(redis: Redis, args: list[str]) -> None:
    """``ACL SETUSER`` with rules as ``RedisUser.setuser_args`` spells them."""
    await redis.execute_command("ACL", "SETUSER", *args)  # type: ignore[no-untyped-call]


async def _save_acl(redis: Redis) -> bool:
    """``ACL SAVE`` when the server keeps its users in an ACL file; True if it does."""
    aclfile = (await redis.config_get("aclfile")).get("aclfile")
    if not aclfile:
        return False
    await redis.acl_save()
    return True


def _replace_secret(path: Path, text: str) -> None:
    """Overwrite a secret file whole (``0600`` in a ``0700`` directory): the old text is
    kept nowhere."""
    write_secret(path, text + "\n")


async def _redis_off(settings: MeshSettings, role: str) -> tuple[str, tuple[str, ...]]:
    """``role``'s Redis user off with a new password on every data node (users are not
    replicated: a replica promoted later must refuse it too) and on the Sentinels."""
    admin = admin_login(settings)
    nodes: list[Redis] = []
    try:
        nodes = await data_nodes(settings.redis_url, **admin.redis_options())
        if await nodes[0].acl_getuser(role) is None:
            return f"no Redis user {role} (an ingress): nothing to switch off", ()
        password = secrets.token_urlsafe(32)
        _replace_secret(redis_password_file(settings.resolved_keys_dir, role), password)
        closed, unsaved = 0, 0
        for node in nodes:
            await _setuser(node, [role, "off", "resetpass", f">{password}"])
            unsaved += not await _save_acl(node)
            closed += await node.client_kill_filter(user=role)
        sentinels_off = await _on_sentinels(settings, {role: ["off", "resetpass", f">{password}"]})
    except RedisError as exc:
        raise ConfigError(
            f"Redis at {settings.redis_url} did not let the admin shut {role} out: {exc}"
        ) from exc
    finally:
        for node in nodes:
            await node.aclose()
    where = (
        f" on {len(nodes)} servers and {sentinels_off} Sentinels"
        if len(nodes) > 1 or sentinels_off
        else ""
    )
    line = f"Redis user {role} off{where}, new password, {closed} connection(s) closed"
    if not unsaved:
        return line + " (ACL file saved)", ()
    return line, (
        f"redis-server at {settings.redis_url} keeps no ACL file: {role} is off until it "
        f"restarts; switch it off in that server's own configuration too",
    )


async def _on_sentinels(settings: MeshSettings, users: Mapping[str, list[str]]) -> int:
    """``ACL SETUSER`` of each of ``users`` on every Sentinel, and its configuration
    written (a Sentinel keeps its users there); how many Sentinels took it."""
    done = 0
    for sentinel in sentinels(settings.redis_url, **admin_login(settings).redis_options()):
        try:
            for role, rules in users.items():
                await _setuser(sentinel, [role, *rules])
            await sentinel.execute_command("SENTINEL", "FLUSHCONFIG")  # type: ignore[no-untyped-call]
            done += 1
        except RedisError as exc:
            log.warning("Sentinel did not take the users of %s: %s", ", ".join(users), exc)
        finally:
            await sentinel.aclose()
    return done


async def _nats_new_key(
    settings: MeshSettings, policy: Policy, role: str, timeout: float
) -> tuple[str, tuple[str, ...]]:
    seed_file = nats_seed_file(settings.resolved_keys_dir, role)
    try:
        old = seed_file.read_text().strip()
    except FileNotFoundError:
        old = ""
    seed: str = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode()
    _replace_secret(seed_file, seed)
    auth = ServerAuth.generate(policy, settings)
    pid = EmbeddedStack(settings, auth=auth).reload_nats()
    if pid is not None:
        line = f"NATS user {role}: new nkey, nats-server pid {pid} reloaded"
        if old:  # each node of a cluster reloads on its own: every one must refuse it
            urls = [u.strip() for u in settings.nats_url.split(",") if u.strip()]
            waited = max([await _old_seed_refused(u, old, timeout) for u in urls])
            nodes = f" by {len(urls)} nodes" if len(urls) > 1 else ""
            line += f", old nkey refused{nodes} after {waited:.2f} s"
        return line, ()
    conf = auth.write_nats_config(Path(settings.state_dir) / "nats-users.conf")
    return f"NATS user {role}: new nkey, written to {conf}", (
        f"nats-server at {settings.nats_url} was not started by `jetmesh up` here: put {conf} "
        "where that server includes its users (`jetmesh policy servers` writes the same file), "
        "reload it (`nats-server --signal reload` or SIGHUP to its pid), and check that a "
        f"connection with {role}'s old seed is refused with 'Authorization Violation'",
    )


async def _old_seed_refused(url: str, seed: str, timeout: float) -> float:
    """Wait until nats-server refuses a connection with ``seed``; returns the seconds waited.

    Raises:
        ConfigError: still accepted after ``timeout`` seconds, or no answer.
    """
    started = time.monotonic()

    async def quiet(_: Exception) -> None:
        return None

    while True:
        nc = NATS()
        try:
            await nc.connect(
                url,
                nkeys_seed_str=seed,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=1,
                error_cb=quiet,
            )
            answer = "accepted"
        except Exception as exc:  # the connection may also be cut by the reload itself
            if AUTH_REFUSED in str(exc).lower():
                return time.monotonic() - started
            answer = f"{type(exc).__name__}: {exc}"
        finally:
            await nc.close()  # a refused connect leaves its socket open otherwise
        if time.monotonic() - started > timeout:
            raise ConfigError(
                f"nats-server at {url} did not refuse the old seed {timeout:.0f} s after the "
                f"reload (last answer: {answer}): see its log for the reload's error"
            )
        await asyncio.sleep(_POLL_S)
