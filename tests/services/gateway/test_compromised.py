"""The gateway's role compromised: with its secrets only (signing key and certificate, nkey
seed; an ingress has no Redis user), it cannot call an agent outside its calls nor read
another role's memory; the servers refuse."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats.errors
import nats.js.api
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from jetmesh import KeyStore, MeshClient, MeshSettings, PublishFailed
from jetmesh.logins import nats_seed_file, redis_password_file
from tests.harness.secured import SecuredMesh
from tests.services.gateway.agents import Shout

pytestmark = pytest.mark.integration


REFUSED = (AuthenticationError, NoPermissionError, ResponseError)


class Stolen:
    """The gateway role's secrets, copied into a keys directory of their own."""

    def __init__(self, source: Path, into: Path, settings: MeshSettings) -> None:
        wanted = [
            Path("gateway.key"),
            Path("gateway.cert"),
            nats_seed_file(Path(), "gateway"),
            *(p.relative_to(source) for p in (source / "roots").glob("*.pub")),
        ]
        for relative in wanted:
            (into / relative).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copy2(source / relative, into / relative)
        self.keys_dir = into
        self.settings = settings.model_copy(update={"keys_dir": into})
        store = KeyStore(into)
        self.mesh = MeshClient(self.settings, store.identity("gateway"), roots=store.roots())


@pytest.fixture
async def stolen(enforced: SecuredMesh) -> AsyncIterator[Stolen]:
    into = enforced.settings.resolved_keys_dir.parent / "stolen-gateway"
    attacker = Stolen(enforced.keys.directory, into, enforced.settings)
    await attacker.mesh.start()
    try:
        yield attacker
    finally:
        await attacker.mesh.close()


async def violation(errors: list[Exception], subject: str) -> bool:
    for _ in range(100):
        said = [str(e).lower() for e in errors]  # nats-py lowercases the server's error
        if any("permissions violation" in e and subject.lower() in e for e in said):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_the_gateway_role_cannot_send_a_task_outside_its_calls(
    stolen: Stolen,
) -> None:
    mesh = stolen.mesh
    assert mesh.certificate.ingress
    errors: list[Exception] = []
    mesh.error_listeners.append(errors.append)
    token = mesh.mint_token("mallory")
    task = mesh.envelope(
        kind="task", workflow="Wstolen", to="other", body=Shout("x"), caller=token, step="other"
    )
    subject = mesh.subjects.task("other")
    with pytest.raises((PublishFailed, TimeoutError)):
        async with asyncio.timeout(3):
            await mesh.store_sealed(subject, task)
    assert await violation(errors, subject)


async def test_the_gateway_role_cannot_read_or_write_another_roles_memory(
    stolen: Stolen,
) -> None:
    assert not redis_password_file(stolen.keys_dir, "gateway").exists()
    p = stolen.settings.subject_prefix
    redis = Redis.from_url(stolen.settings.redis_url)  # no user of its own: the default
    try:
        for key in (f"{p}:wf:W1:echo:notes", f"{p}:journal:echo:W1", f"{p}:result:W1:echo:x"):
            with pytest.raises(REFUSED) as got:
                await redis.get(key)
            assert "auth" in str(got.value).lower()
            with pytest.raises(REFUSED) as got:
                await redis.set(key, msgspec.json.encode({"forged": True}))
            assert "auth" in str(got.value).lower()
    finally:
        await redis.aclose()


async def test_the_gateway_role_may_not_create_a_consumer_on_the_event_log(
    stolen: Stolen,
) -> None:
    """It reads events by direct get only: a consumer would deliver every workflow's."""
    mesh = stolen.mesh
    errors: list[Exception] = []
    mesh.error_listeners.append(errors.append)
    with pytest.raises((nats.errors.Error, TimeoutError)):
        async with asyncio.timeout(3):
            await mesh.js.add_consumer(
                mesh.settings.events_stream,
                nats.js.api.ConsumerConfig(filter_subject=f"{mesh.subjects.prefix}.event.>"),
                timeout=2,
            )
    assert await violation(errors, f"$JS.API.CONSUMER.CREATE.{mesh.settings.events_stream}")
