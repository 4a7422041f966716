"""EmbeddedStack.reload_nats: the nats-server that `jetmesh up` started reloads its users
on SIGHUP; one it did not start is left alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from jetmesh.embedded import EmbeddedStack, NatsServer, free_port
from jetmesh.policy import parse_policy
from jetmesh.policy.servers import ServerAuth
from jetmesh.settings import MeshSettings

pytestmark = pytest.mark.integration

POLICY = parse_policy({"roles": {"cli": {"ingress": True, "calls": ["worker"]}, "worker": {}}})


@pytest.fixture
def settings(tmp_path: Path) -> MeshSettings:
    return MeshSettings(
        state_dir=tmp_path / "state",
        nats_url=f"nats://127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )


@pytest.fixture
def stack(settings: MeshSettings) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(settings, auth=ServerAuth.generate(POLICY, settings))
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def test_without_users_there_is_nothing_to_reload(settings: MeshSettings) -> None:
    with pytest.raises(ValueError, match="needs the users"):
        EmbeddedStack(settings).reload_nats()


def test_a_server_this_stack_did_not_start_is_left_alone(
    settings: MeshSettings, tmp_path: Path
) -> None:
    port = int(settings.nats_url.rsplit(":", 1)[1])
    config = tmp_path / "elsewhere" / "nats.conf"
    with NatsServer(port, data_dir=config.parent):
        before = config.read_text()
        stack = EmbeddedStack(settings, auth=ServerAuth.generate(POLICY, settings))
        assert stack.reload_nats() is None
        assert config.read_text() == before
        assert not (Path(settings.state_dir) / "nats" / "nats.conf").exists()


async def test_a_removed_user_is_closed_and_refused_after_the_reload(
    stack: EmbeddedStack, settings: MeshSettings
) -> None:
    assert stack.auth is not None
    old = stack.auth.nats_user("worker")
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    nc = await nats.connect(
        settings.nats_url, nkeys_seed_str=old.seed, allow_reconnect=False, closed_cb=on_closed
    )
    old.seed_file.unlink()  # the next generation makes the worker a new seed
    stack.auth = ServerAuth.generate(POLICY, settings)
    new = stack.auth.nats_user("worker")
    assert new.public_key != old.public_key

    pid = stack.reload_nats()
    assert pid == stack.status().nats.pid
    await asyncio.wait_for(closed.wait(), 5)
    assert nc.is_closed
    conf = (Path(settings.state_dir) / "nats" / "nats.conf").read_text()
    assert new.public_key in conf
    assert old.public_key not in conf
    fresh = await nats.connect(settings.nats_url, nkeys_seed_str=new.seed, allow_reconnect=False)
    assert fresh.is_connected
    await fresh.close()
