"""`jetmesh up` enforces the policy: servers started with the generated users, the admin
step run, anonymous clients refused; `--open` keeps open servers for development."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nats
import pytest
import redis
from typer.testing import CliRunner

from jetmesh.cli.app import app
from jetmesh.embedded import EmbeddedStack, free_port
from jetmesh.logins import admin_login, role_login
from jetmesh.settings import MeshSettings
from services import demo
from services.support.systems import Desk

pytestmark = pytest.mark.integration


@pytest.fixture
def up_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MeshSettings]:
    """Settings of a `jetmesh up` on free ports under ``tmp_path``; brought down after."""
    env = {
        "JETMESH_STATE_DIR": str(tmp_path / "state"),
        "JETMESH_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "JETMESH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "JETMESH_POLICY_FILE": str(demo.POLICY),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = MeshSettings()
    yield settings
    EmbeddedStack(settings).down()


async def consumers(url: str, **options: object) -> list[str]:
    """The consumers of MESH_TASKS, seen by a client connected with ``options``."""
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2, **options)  # type: ignore[arg-type]
    try:
        return [str(info.name) for info in await nc.jetstream().consumers_info("MESH_TASKS")]
    finally:
        await nc.close()


async def desk_as(settings: MeshSettings, role: str) -> str:
    """Pay a refund on the desk's stand-in connected as ``role``'s Redis user."""
    desk = Desk(settings.redis_url, role=role, settings=settings)
    try:
        return (await desk.refund("w1:billing.1", "A-1", 10.0, approved_by="")).id[:2]
    finally:
        await desk.aclose()


def anonymous_connect(url: str) -> str:
    """What nats-server answers a client that connects with no credentials."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        return sock.recv(4096).decode()


def test_up_enforces_the_policy_file(up_env: MeshSettings) -> None:
    result = CliRunner().invoke(app, ["up"])
    assert result.exit_code == 0, result.output
    assert f"policy {demo.POLICY}: 13 roles" in result.output
    assert "admin  consumers 24" in result.output  # tasks and advisories of 12 agent roles
    assert "admin  delivery as nats-server holds each role's task consumer" in result.output
    for role in ("billing", "toolgate", "writer"):  # as the server holds it, a line a role
        assert re.search(
            rf"^admin    {role} +AckWait 10 s, max_deliver 5, max_ack_pending 1024$",
            result.output,
            re.MULTILINE,
        ), result.output

    admin = admin_login(up_env)
    assert admin.user == "admin"
    made = asyncio.run(consumers(up_env.nats_url, **admin.nats_options()))
    assert "billing" in made
    assert "toolgate" in made
    assert "Authorization Violation" in anonymous_connect(up_env.nats_url)

    with redis.Redis.from_url(up_env.redis_url) as plain, pytest.raises(redis.AuthenticationError):
        plain.ping()
    kb = role_login(up_env, "kb")
    with redis.Redis.from_url(up_env.redis_url, **kb.redis_options()) as as_kb:
        assert as_kb.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_kb.get("mesh:wf:w1:billing:draft")

    assert asyncio.run(desk_as(up_env, "toolgate")) == "R-"
    with pytest.raises(redis.exceptions.NoPermissionError):  # only through toolgate
        asyncio.run(desk_as(up_env, "billing"))

    again = CliRunner().invoke(app, ["up"])  # idempotent: reused servers, same provisioning
    assert again.exit_code == 0, again.output
    assert "reused" in again.output
    assert "admin  consumers 24" in again.output


def test_up_open_starts_servers_without_users(up_env: MeshSettings) -> None:
    result = CliRunner().invoke(app, ["up", "--open"])
    assert result.exit_code == 0, result.output
    assert "open   servers without users" in result.output
    assert "PONG" in anonymous_connect(up_env.nats_url)
    with redis.Redis.from_url(up_env.redis_url) as plain:
        assert plain.ping()


def test_up_refuses_a_port_another_program_answers(
    up_env: MeshSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web server at the Redis port is not taken for Redis: an error naming the port,
    exit 1, and nothing left running that ``up`` started."""
    web = ThreadingHTTPServer(("127.0.0.1", free_port()), BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        url = f"redis://127.0.0.1:{web.server_address[1]}/0"
        monkeypatch.setenv("JETMESH_REDIS_URL", url)
        result = CliRunner().invoke(app, ["up"])
        assert result.exit_code == 1, result.output
        assert f"redis: something that does not speak redis answers at {url}" in " ".join(
            result.output.split()
        )
        assert "Traceback" not in result.output
        assert not EmbeddedStack(MeshSettings()).status().nats.pid
    finally:
        web.shutdown()
        web.server_close()
