"""The servers enforce the policy: each role's NATS user and Redis user, generated from it,
can do its own work and nothing else. Real nats-server and redis-server of this test's own."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, StreamConfig
from redis.exceptions import NoPermissionError

from jetmesh.embedded import NatsServer, RedisServer
from jetmesh.identity.certificates import verify_certificate
from jetmesh.identity.keystore import KeyStore
from jetmesh.memory import keys
from jetmesh.memory.functions import CAS, fcall, load_library
from jetmesh.policy import inbox_prefix, load_policy
from jetmesh.policy.servers import ServerAuth
from jetmesh.provision import provision
from jetmesh.settings import MeshSettings
from services import support

SUPPORT = support.POLICY

pytestmark = pytest.mark.integration


@dataclass
class Mesh:
    settings: MeshSettings
    auth: ServerAuth
    nats: NatsServer
    redis: RedisServer


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    auth = ServerAuth.generate(load_policy(SUPPORT), MeshSettings(state_dir=tmp_path))
    acl = auth.write_redis_acl_file(tmp_path / "redis-users.acl")
    admin_password = auth.redis_user("default").password
    with (
        NatsServer(data_dir=tmp_path / "nats", config_extra=auth.nats_config()) as nats_server,
        RedisServer(data_dir=tmp_path / "redis", aclfile=acl, password=admin_password) as redis,
    ):
        settings = MeshSettings(
            state_dir=tmp_path, nats_url=nats_server.url, redis_url=f"redis://{redis.address}/0"
        )
        yield Mesh(settings, auth, nats_server, redis)


async def connect(mesh: Mesh, user: str) -> tuple[NATS, list[Exception]]:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(
        mesh.nats.url,
        nkeys_seed_str=mesh.auth.nats_user(user).seed,
        error_cb=on_error,
        allow_reconnect=False,
        inbox_prefix="_INBOX" if user == "admin" else inbox_prefix(user),
    )
    return nc, errors


@pytest.fixture
async def declared(mesh: Mesh) -> Mesh:
    """The admin step: streams, each agent's consumers, the registry, the certificates."""
    await provision(mesh.settings, load_policy(SUPPORT))
    return mesh


async def violation(errors: list[Exception], subject: str) -> None:
    for _ in range(50):
        if any("permissions violation" in str(e) and subject.lower() in str(e) for e in errors):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no permissions violation for {subject}: {errors}")


def test_secrets_are_private(mesh: Mesh) -> None:
    users = [*(u.seed_file for u in mesh.auth.nats_users)]
    users += [u.password_file for u in mesh.auth.redis_users]
    assert len(users) == 1 + 9 + 1 + 8  # admin, 9 roles; default, 8 agents (no ingress)
    for path in users:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    again = ServerAuth.generate(load_policy(SUPPORT), mesh.settings)
    assert again.nats_user("kb").public_key == mesh.auth.nats_user("kb").public_key


async def test_role_consumes_its_tasks_and_calls_only_its_callees(declared: Mesh) -> None:
    triage, triage_errors = await connect(declared, "triage")
    billing, billing_errors = await connect(declared, "billing")
    try:
        js = triage.jetstream()
        ack = await js.publish("mesh.agent.billing.task", b"refund please", timeout=2)
        assert ack.stream == declared.settings.tasks_stream

        sub = await billing.jetstream().pull_subscribe_bind(
            "billing", stream=declared.settings.tasks_stream, inbox_prefix=b"_INBOX.billing."
        )
        (msg,) = await sub.fetch(1, timeout=2)
        assert msg.data == b"refund please"
        await msg.ack()

        # triage may not call kb: the server refuses the publish
        await triage.publish("mesh.agent.kb.task", b"x")
        await violation(triage_errors, "mesh.agent.kb.task")
        # nor fetch from billing's consumer
        await triage.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{declared.settings.tasks_stream}.billing", b"{}"
        )
        await violation(triage_errors, ".billing")
        # billing may not reply to kb's instances, only to its callers (triage)
        await billing.publish("mesh.agent.kb.reply.i1", b"x")
        await violation(billing_errors, "mesh.agent.kb.reply.i1")
        # nor read another role's replies
        await billing.subscribe("mesh.agent.triage.reply.*")
        await violation(billing_errors, "mesh.agent.triage.reply.*")
        # but reads certificates from the registry
        kv = await billing.jetstream().key_value(declared.settings.registry_bucket)
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await kv.get("nobody")
        # and the event log by direct get, but not the tasks stream that way
        with pytest.raises(nats.js.errors.NotFoundError):
            await billing.jetstream().get_msg(
                declared.settings.events_stream,
                seq=1,
                subject="mesh.event.>",
                next=True,
                direct=True,
            )
        await billing.publish(f"$JS.API.DIRECT.GET.{declared.settings.tasks_stream}", b"{}")
        await violation(billing_errors, "$js.api.direct.get.mesh_tasks")
    finally:
        await triage.close()
        await billing.close()


async def test_role_cannot_create_streams_or_consumers(declared: Mesh) -> None:
    kb, errors = await connect(declared, "kb")
    try:
        js = kb.jetstream(timeout=0.5)
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(
                declared.settings.tasks_stream,
                ConsumerConfig(durable_name="sneaky", filter_subject="mesh.agent.billing.task"),
            )
        await violation(errors, "$js.api.consumer.")
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_stream(StreamConfig(name="MINE", subjects=["mine.>"]))
        await violation(errors, "$js.api.stream.create.mine")
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_consumer(declared.settings.tasks_stream, "billing")
        await violation(errors, "$js.api.consumer.delete")
        events = declared.settings.events_stream
        with pytest.raises(nats.errors.TimeoutError):  # the audit trail stays as written
            await js.delete_msg(events, 1)
        await violation(errors, f"$js.api.stream.msg.delete.{events.lower()}")
        with pytest.raises(nats.errors.TimeoutError):
            await js.purge_stream(events)
        await violation(errors, f"$js.api.stream.purge.{events.lower()}")
    finally:
        await kb.close()

    admin, _ = await connect(declared, "admin")
    try:
        js = admin.jetstream()
        await js.add_stream(StreamConfig(name="MINE", subjects=["mine.>"]))
        info = await js.add_consumer("MINE", ConsumerConfig(durable_name="c"))
        assert info.name == "c"
    finally:
        await admin.close()


async def test_redis_user_keeps_to_its_keys(mesh: Mesh) -> None:
    prefix = mesh.settings.subject_prefix
    user = mesh.auth.redis_user("billing")
    billing = aioredis.Redis(
        host=mesh.redis.host, port=mesh.redis.port, username="billing", password=user.password
    )
    try:
        own = keys.memory(prefix, "wf1", "billing", "draft")
        await billing.hset(own, mapping={"v": "1", "d": "x"})
        assert await billing.hget(own, "v") == b"1"
        await billing.set(keys.result(prefix, "wf1", "billing", "triage/billing.1"), "r", ex=60)
        await billing.set(
            keys.journal(prefix, "wf1", "billing", "triage/billing.1/kb.1"), "j", ex=60
        )
        await billing.set(
            keys.once(prefix, "wf1", "billing", "triage/billing.1", "refund"), "o", ex=60
        )
        # the mesh's functions on its own keys work (the working-memory compare-and-set)
        admin = aioredis.Redis.from_url(mesh.redis.url)
        try:
            await load_library(admin)
        finally:
            await admin.aclose()
        assert (await fcall(billing, CAS, [own], ["1", b'"y"', 60, "w1"]))[0] == 1

        others = keys.memory(prefix, "wf1", "kb", "draft")
        with pytest.raises(NoPermissionError):
            await billing.get(others)
        with pytest.raises(NoPermissionError):
            await billing.set(keys.result(prefix, "wf1", "kb", "x"), "forged")
        with pytest.raises(NoPermissionError):
            await billing.set(keys.journal(prefix, "wf1", "kb", "triage/kb.1"), "forged")
        with pytest.raises(NoPermissionError, match="No permissions to access a key"):
            await fcall(billing, CAS, [others], ["", b'"forged"', 60, "w2"])
        with pytest.raises(NoPermissionError):  # no script of its own, even on its own key
            await billing.eval("return redis.call('GET', KEYS[1])", 1, own)
        for command in (("CONFIG", "GET", "dir"), ("FLUSHALL",), ("KEYS", "*"), ("SCAN", "0")):
            with pytest.raises(NoPermissionError):
                await billing.execute_command(*command)
    finally:
        await billing.aclose()

    admin = aioredis.Redis.from_url(mesh.redis.url)
    try:
        assert await admin.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        await admin.aclose()


async def test_provision_is_idempotent_and_registers_policy_certificates(
    declared: Mesh,
) -> None:
    s = declared.settings
    again = await provision(s, load_policy(SUPPORT))  # a second run keeps what the first made
    store = KeyStore(s.resolved_keys_dir)
    assert dict(again.certificates)["billing"] == store.identity("billing").key.kid
    assert len(again.consumers) == 2 * 8  # tasks and advisories of every agent role

    admin, _ = await connect(declared, "admin")
    try:
        js = admin.jetstream()
        info = await js.consumer_info(s.tasks_stream, "kb")
        assert info.config.filter_subject == "mesh.agent.kb.task"
        assert info.config.max_deliver == s.max_deliver
        assert (await js.stream_info(s.events_stream)).config.allow_direct
        kv = await js.key_value(s.registry_bucket)
        for role, kid in again.certificates:
            stored = (await kv.get(kid)).value or b""
            cert = verify_certificate(stored.decode(), store.roots())
            assert cert.name == role
    finally:
        await admin.close()
    billing = store.certificate("billing")
    assert billing.scopes == {"refund:write"}
    assert "mesh.agent.toolgate.task" in billing.publish
    assert "mesh.agent.triage.task" not in billing.publish
    assert billing.subscribe == ("mesh.agent.billing.task", "mesh.agent.billing.reply.*")
    cli = store.certificate("cli")
    assert cli.ingress
    assert "mesh.agent.triage.task" in cli.publish
