"""Revoking a role's key shuts the role out of both servers: whoever holds its old nkey
seed and Redis password (a compromised role) loses its connections and cannot open new
ones, within the stated time; the other roles keep working; rotate + provision let the
role back in; revoking an old key after a planned rotation keeps the new replicas serving.

Servers started as `jetmesh up` starts them (:mod:`tests.harness.secured`), the revoke
run as the `jetmesh keys revoke` command where the command is what is shown.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nkeys
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from redis.exceptions import AuthenticationError, ConnectionError

from jetmesh.cli.ingress import admin_client
from jetmesh.identity.revocation import key_owner, lookup_revocation, revoke_key
from jetmesh.logins import ServerLogin, admin_login, role_login
from jetmesh.memory.connection import without_userinfo
from jetmesh.processes import AgentProcess, settings_env
from jetmesh.provision import provision
from jetmesh.shutout import SHUT_OUT_WITHIN_S, shut_out
from tests.harness.agents import Plan, Report, counter, planner
from tests.harness.mesh import REPO_ROOT
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

POLICY_TOML = """
[roles.cli]
ingress = true
calls = ["planner", "approver"]

[roles.planner]
calls = ["counter"]

[roles.counter]

[roles.approver]
"""
"""tests.harness.secured.POLICY as a file, for the command (JETMESH_POLICY_FILE)."""

COMMAND_WITHIN_S = 5.0
"""The stated bound for the whole `jetmesh keys revoke` command, from its start (Python's
own start included, about 0.7 s of the 0.9 s measured) to the role refused by both."""


@dataclass
class Held:
    """What a holder of one role's secrets has open: a NATS connection, a Redis client."""

    login: ServerLogin
    nc: NATS
    redis: aioredis.Redis
    closed_at: list[float] = field(default_factory=list)

    async def aclose(self) -> None:
        await self.nc.close()
        await self.redis.aclose()


async def hold(secured: SecuredMesh, role: str) -> Held:
    """Open ``role``'s connections with its secrets as they are now, and use both."""
    credentials = role_login(secured.settings, role)
    closed_at: list[float] = []

    async def on_closed() -> None:
        closed_at.append(time.monotonic())

    async def quiet(_: Exception) -> None:
        return None

    nc = await nats.connect(
        secured.settings.nats_url,
        allow_reconnect=False,
        closed_cb=on_closed,
        error_cb=quiet,
        **credentials.nats_options(),
    )
    redis = redis_as(secured, credentials)
    assert await redis.set(f"mesh:wf:w1:{role}:k", "v")
    await nc.publish(f"mesh.event.w1.{role}", b"{}")
    await nc.flush()
    return Held(credentials, nc, redis, closed_at)


def public_key(credentials: ServerLogin) -> str:
    assert credentials.nats_seed is not None
    public: bytes = nkeys.from_seed(bytearray(credentials.nats_seed.encode())).public_key
    return public.decode()


def redis_as(secured: SecuredMesh, credentials: ServerLogin) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        without_userinfo(secured.settings.redis_url), **credentials.redis_options()
    )


async def nats_refuses(secured: SecuredMesh, credentials: ServerLogin) -> str:
    """The error of a new NATS connection with ``credentials`` ("" if it was accepted)."""

    async def quiet(_: Exception) -> None:
        return None

    nc = NATS()
    try:
        await nc.connect(
            secured.settings.nats_url,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
            **credentials.nats_options(),
        )
    except Exception as exc:
        return str(exc)
    finally:
        await nc.close()
    return ""


async def redis_refuses(secured: SecuredMesh, credentials: ServerLogin) -> str:
    """The error of a new Redis connection's AUTH with ``credentials`` ("" if accepted)."""
    client = redis_as(secured, credentials)
    try:
        await client.ping()
    except AuthenticationError as exc:
        return str(exc)
    finally:
        await client.aclose()
    return ""


async def refused_at(held: Held, role: str, started: float) -> float:
    """Seconds from ``started`` to the held Redis connection refusing a command."""
    deadline = started + COMMAND_WITHIN_S
    while True:
        try:
            await held.redis.set(f"mesh:wf:w1:{role}:k", "after")
        except (AuthenticationError, ConnectionError):
            return time.monotonic() - started
        assert time.monotonic() < deadline, "the role's Redis connection still works"
        await asyncio.sleep(0.01)


async def jetmesh(secured: SecuredMesh, *args: str) -> tuple[int, str, str]:
    """Run ``jetmesh ARGS`` on the secured mesh's settings and policy file."""
    policy_file = Path(secured.settings.state_dir) / "policy.toml"
    policy_file.write_text(POLICY_TOML)
    env = settings_env(secured.settings) | {"JETMESH_POLICY_FILE": str(policy_file)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def revoke(secured: SecuredMesh, kid: str) -> None:
    """Record the revocation as ``jetmesh keys revoke`` does: as the admin."""
    async with admin_client(secured.settings) as admin:
        await revoke_key(admin.registry, kid, reason="leaked")


async def workflow(secured: SecuredMesh) -> Report:
    cli = secured.clients[0] if secured.clients else await secured.ingress()
    return await cli.request(
        "planner", Plan(pause_s=0), token=cli.mint_token("alice"), returns=Report, timeout=10
    )


async def test_revoke_shuts_the_role_out_of_both_servers_within_the_stated_time(
    secured: SecuredMesh,
) -> None:
    await secured.start_replicas(planner)
    cli = await secured.ingress()
    attacker = await hold(secured, "counter")
    other = await hold(secured, "planner")
    kid = secured.keys.identity("counter").key.kid
    assert await key_owner(cli.registry, kid, secured.keys.roots()) == "counter"

    started = time.monotonic()
    code, out, err = await jetmesh(secured, "keys", "revoke", kid, "--reason", "leaked")
    took = time.monotonic() - started
    assert code == 0, (out, err)
    assert "shut   Redis user counter off, new password, 1 connection(s) closed" in out, out
    assert "NATS user counter: new nkey, nats-server pid" in out, out
    assert "jetmesh keys rotate counter" in out, out

    # The held NATS connection was closed by the server, within the stated time.
    assert attacker.nc.is_closed
    assert len(attacker.closed_at) == 1
    assert attacker.closed_at[0] - started < COMMAND_WITHIN_S, (attacker.closed_at, took)
    assert took < COMMAND_WITHIN_S, took
    # Its Redis connection was cut; its reconnect's AUTH is refused (the user is off).
    assert await refused_at(attacker, "counter", started) < COMMAND_WITHIN_S
    # New connections with the old secrets are refused by both servers.
    assert "Authorization Violation" in await nats_refuses(secured, attacker.login)
    assert await redis_refuses(secured, attacker.login)
    # The keys directory holds new secrets, not the old ones.
    fresh = role_login(secured.settings, "counter")
    assert fresh.nats_seed != attacker.login.nats_seed
    assert fresh.redis_password != attacker.login.redis_password

    # The other roles keep working: planner's connections, the cli ingress.
    assert other.nc.is_connected
    assert not other.closed_at
    await other.nc.publish("mesh.event.w1.planner", b"{}")
    await other.nc.flush()
    assert await other.redis.set("mesh:wf:w1:planner:k", "still")
    revocation = await lookup_revocation(cli.registry, kid)  # cli's NATS connection
    assert revocation is not None
    assert revocation.reason == "leaked"
    await attacker.aclose()
    await other.aclose()


async def test_the_shut_out_takes_less_than_the_stated_time(secured: SecuredMesh) -> None:
    attacker = await hold(secured, "counter")
    kid = secured.keys.identity("counter").key.kid

    started = time.monotonic()
    await revoke(secured, kid)
    done = await shut_out(secured.settings, secured.policy, "counter")
    assert done.complete
    assert done.pending == ()
    assert done.seconds < SHUT_OUT_WITHIN_S, done.seconds
    refused = await refused_at(attacker, "counter", started)
    assert refused < SHUT_OUT_WITHIN_S, refused
    while not attacker.closed_at:
        assert time.monotonic() - started < SHUT_OUT_WITHIN_S, "NATS connection still open"
        await asyncio.sleep(0.005)
    assert attacker.closed_at[0] - started < SHUT_OUT_WITHIN_S
    await attacker.aclose()


async def test_rotate_and_provision_let_the_role_back_in(secured: SecuredMesh) -> None:
    await secured.start_replicas(planner)
    old = role_login(secured.settings, "counter")
    await revoke(secured, secured.keys.identity("counter").key.kid)
    await shut_out(secured.settings, secured.policy, "counter")

    # Provisioning again with the revoked key still current keeps the user off.
    kept = await provision(secured.settings, secured.policy)
    assert kept.readmitted == ()
    assert await redis_refuses(secured, role_login(secured.settings, "counter"))

    new_kid = secured.keys.rotate("counter", ttl_s=3600)[0].key.kid
    code, out, err = await jetmesh(secured, "admin", "provision")
    assert code == 0, (out, err)
    assert "admin  users    Redis users on again (shut out, now a key not revoked): counter" in out
    assert f"counter {new_kid}" in out

    await secured.start_replicas(counter)  # the new key, the new seed and password
    assert (await workflow(secured)).parts == [1, 2]
    assert "Authorization Violation" in await nats_refuses(secured, old)
    assert await redis_refuses(secured, old)
    assert await redis_refuses(secured, role_login(secured.settings, "counter")) == ""


async def test_revoking_an_old_key_after_a_rotation_keeps_the_new_replicas(
    secured: SecuredMesh,
) -> None:
    old_kid = secured.keys.identity("counter").key.kid
    secured.keys.rotate("counter", ttl_s=3600)
    await provision(secured.settings, secured.policy)  # registers the new certificate
    await secured.start_replicas(counter, planner)
    assert (await workflow(secured)).parts == [1, 2]
    replica = await hold(secured, "counter")  # the role's connections, as its replicas hold

    code, out, err = await jetmesh(secured, "keys", "revoke", old_kid, "--reason", "rotated")
    assert code == 0, (out, err)
    assert f"kept   counter's server users: {old_kid} is an old key of counter" in out, out
    assert "shut   " not in out

    assert (await workflow(secured)).parts == [1, 2]
    assert replica.nc.is_connected
    assert not replica.closed_at
    assert await replica.redis.set("mesh:wf:w1:counter:k", "still")
    assert await nats_refuses(secured, replica.login) == ""
    assert role_login(secured.settings, "counter") == replica.login

    # Asked for, the old key's revocation takes the users away as well. (The replica is
    # stopped first: nats-py leaves a socket open on each refused reconnect.)
    await secured.replicas[0].drain(timeout=5.0)
    code, out, err = await jetmesh(secured, "keys", "revoke", old_kid, "--shut-out")
    assert code == 0, (out, err)
    assert "shut   Redis user counter off" in out, out
    assert replica.closed_at
    assert "Authorization Violation" in await nats_refuses(secured, replica.login)
    await replica.aclose()


async def test_without_the_keys_owner_only_the_registry_changes(secured: SecuredMesh) -> None:
    held = await hold(secured, "counter")
    unknown = "counter-0123456789abcdef"  # no certificate in the registry
    code, out, err = await jetmesh(secured, "keys", "revoke", unknown)
    assert code == 1, (out, err)
    assert f"no certificate of {unknown} in the registry" in err, err
    assert f"revoked {unknown}" in out, out

    kid = secured.keys.identity("counter").key.kid
    code, out, err = await jetmesh(secured, "keys", "revoke", kid, "--registry-only")
    assert code == 0, (out, err)
    assert "shut   " not in out
    assert held.nc.is_connected
    assert await held.redis.set("mesh:wf:w1:counter:k", "still")
    assert await nats_refuses(secured, held.login) == ""
    await held.aclose()


async def test_a_nats_server_not_started_here_is_left_to_the_operator(
    secured: SecuredMesh,
) -> None:
    held = await hold(secured, "counter")
    kid = secured.keys.identity("counter").key.kid
    pid_file = Path(secured.settings.state_dir) / "nats.pid"
    aside = pid_file.with_name("nats.pid.aside")
    pid_file.rename(aside)  # as if someone else had started this nats-server
    try:
        code, out, err = await jetmesh(secured, "keys", "revoke", kid)
    finally:
        aside.rename(pid_file)
    assert code == 1, (out, err)
    assert "was not started by `jetmesh up` here" in err, err
    users = (Path(secured.settings.state_dir) / "nats-users.conf").read_text()
    fresh = role_login(secured.settings, "counter")
    assert public_key(fresh) in users
    assert public_key(held.login) not in users
    # Redis was done (from anywhere the admin reaches it); NATS was not reloaded.
    assert await redis_refuses(secured, held.login)
    assert held.nc.is_connected
    assert await nats_refuses(secured, held.login) == ""
    await held.aclose()


async def test_the_admin_step_leaves_users_that_are_on_alone(secured: SecuredMesh) -> None:
    client = redis_as(secured, admin_login(secured.settings))
    try:
        before = await client.acl_getuser("planner")
        done = await provision(secured.settings, secured.policy)
        assert done.readmitted == ()
        assert await client.acl_getuser("planner") == before
    finally:
        await client.aclose()


async def test_a_running_process_of_a_shut_out_role_stops(
    secured: SecuredMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `jetmesh run` process of the role keeps no connection the server refuses: after
    a few refused reconnects it closes it and stops, saying why (exit 1), instead of
    retrying for ever."""
    monkeypatch.chdir(REPO_ROOT)
    log = tmp_path / "counter.log"
    proc = AgentProcess(["tests.harness.agents:counter"], secured.settings, log_file=log)
    await asyncio.to_thread(proc.start)
    try:
        kid = secured.keys.identity("counter").key.kid
        code, out, err = await jetmesh(secured, "keys", "revoke", kid)
        assert code == 0, (out, err)
        assert proc.proc is not None
        assert await asyncio.to_thread(proc.proc.wait, 15) == 1
        assert "no longer accepts the credentials of counter" in log.read_text()
    finally:
        await asyncio.to_thread(proc.stop)
