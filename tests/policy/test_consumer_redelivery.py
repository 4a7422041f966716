"""The admin step applies AckWait and max deliveries to existing consumers, and prints
what the server holds: a changed ``JETMESH_ACK_WAIT_S`` takes effect on the next
`jetmesh up` or `jetmesh admin provision`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from typer.testing import CliRunner

from jetmesh.bus.streams import advisories_stream
from jetmesh.cli.app import app
from jetmesh.embedded import EmbeddedStack, free_port
from jetmesh.logins import admin_login
from jetmesh.settings import MeshSettings
from services import support

pytestmark = pytest.mark.integration


@pytest.fixture
def up_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MeshSettings]:
    """Settings of a `jetmesh up` on free ports under ``tmp_path``, with AckWait 30 s and
    a call timeout of 60 s; brought down after."""
    env = {
        "JETMESH_STATE_DIR": str(tmp_path / "state"),
        "JETMESH_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "JETMESH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "JETMESH_ACK_WAIT_S": "30",
        "JETMESH_CALL_TIMEOUT_S": "60",
        "JETMESH_POLICY_FILE": str(support.POLICY),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = MeshSettings()
    yield settings
    EmbeddedStack(settings).down()


async def held(settings: MeshSettings, role: str) -> tuple[float, int, float]:
    """(AckWait, max deliveries) of ``role``'s tasks consumer and its advisories'
    AckWait, as the server holds them."""
    nc = await nats.connect(
        settings.nats_url, allow_reconnect=False, **admin_login(settings).nats_options()
    )  # type: ignore[arg-type]
    try:
        js = nc.jetstream()
        tasks = (await js.consumer_info(settings.tasks_stream, role)).config
        advisories = (await js.consumer_info(advisories_stream(settings), role)).config
        return (
            float(tasks.ack_wait or 0),
            int(tasks.max_deliver or 0),
            float(advisories.ack_wait or 0),
        )
    finally:
        await nc.close()


def test_provision_updates_existing_consumers_and_prints_them(
    up_env: MeshSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = CliRunner().invoke(app, ["up"])
    assert up.exit_code == 0, up.output
    assert re.search(r"^admin    billing +AckWait 30 s, max_deliver 5, ", up.output, re.M)
    assert asyncio.run(held(up_env, "billing")) == (30.0, 5, 30.0)

    monkeypatch.setenv("JETMESH_ACK_WAIT_S", "10")
    monkeypatch.setenv("JETMESH_MAX_DELIVER", "7")
    again = CliRunner().invoke(app, ["admin", "provision"])
    assert again.exit_code == 0, again.output
    for role in ("billing", "toolgate"):  # a line a role, as the server holds it
        assert re.search(rf"^admin    {role} +AckWait 10 s, max_deliver 7, ", again.output, re.M)
    assert asyncio.run(held(MeshSettings(), "billing")) == (10.0, 7, 10.0)
    assert asyncio.run(held(MeshSettings(), "toolgate")) == (10.0, 7, 10.0)
