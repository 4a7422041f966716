"""Health endpoints: ``/healthz`` while the process runs, ``/readyz`` 200 only while every
replica is running on a connected NATS connection; bad requests answered and closed.

The server alone first (answering from a plain function), then a real ``jetmesh run``
process on servers of the test's own, which it starts late, stops, restarts, and SIGTERMs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from jetmesh import ConfigError, KeyStore, MeshClient, MeshSettings, Replica, Subjects
from jetmesh.embedded import NatsServer, RedisServer, free_port
from jetmesh.processes import settings_env
from jetmesh.runtime import health
from jetmesh.runtime.health import MAX_CONNECTIONS, MAX_HEADER_BYTES, MAX_LINE_BYTES, HealthServer
from jetmesh.runtime.runner import readiness, replica_state
from tests.conftest import isolated_settings
from tests.harness.agents import Done, Job
from tests.harness.mesh import REPO_ROOT, EchoAgent, Mesh

WAIT_S = 20.0
"""How long a poll waits for a state to show."""


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, object]]:
    """Send raw ``request`` bytes; the status and JSON body of the answer (0, {} when the
    connection was closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    except ConnectionResetError:
        return 0, {}
    finally:
        writer.close()
    if not answer:
        return 0, {}
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


async def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    return await exchange(port, f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())


async def wait_for(
    check: Callable[[], Awaitable[tuple[int, dict[str, object]]]],
    want: Callable[[int, dict[str, object]], bool],
) -> tuple[int, dict[str, object]]:
    """Poll ``check`` until ``want`` holds; the last answer either way."""
    give_up = time.monotonic() + WAIT_S
    while True:
        try:
            answer = await check()
        except OSError:  # not listening yet
            answer = (0, {})
        if want(*answer) or time.monotonic() > give_up:
            return answer
        await asyncio.sleep(0.1)


# -- the server alone ----------------------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthServer, dict[str, str]]]:
    """A health server on a free port, answering from a dict the test changes."""
    states = {"billing": "starting"}
    async with HealthServer(lambda: states, host="127.0.0.1", port=0) as server:
        yield server, states


async def test_healthz_answers_alive(served: tuple[HealthServer, dict[str, str]]) -> None:
    server, _ = served
    assert await get(server.port, "/healthz") == (200, {"status": "alive"})
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_readyz_is_503_until_every_replica_runs(
    served: tuple[HealthServer, dict[str, str]],
) -> None:
    server, states = served
    assert await get(server.port, "/readyz") == (
        503,
        {"status": "not ready", "replicas": {"billing": "starting"}},
    )
    states["billing"] = "running"
    states["kb"] = "reconnecting"
    assert await get(server.port, "/readyz") == (
        503,
        {"status": "not ready", "replicas": {"billing": "running", "kb": "reconnecting"}},
    )
    states["kb"] = "running"
    assert await get(server.port, "/readyz?verbose=1") == (
        200,
        {"status": "ready", "replicas": {"billing": "running", "kb": "running"}},
    )


async def test_no_replica_is_not_ready() -> None:
    async with HealthServer(lambda: {}, host="127.0.0.1", port=0) as server:
        assert (await get(server.port, "/readyz"))[0] == 503


async def test_a_failing_readiness_check_is_not_ready() -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("no state")

    async with HealthServer(broken, host="127.0.0.1", port=0) as server:
        assert await get(server.port, "/readyz") == (
            503,
            {"status": "not ready", "error": "readiness check failed: no state"},
        )
        assert await get(server.port, "/healthz") == (200, {"status": "alive"})


async def test_a_request_not_sent_in_time_gets_408(
    served: tuple[HealthServer, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "READ_TIMEOUT_S", 0.2)
    server, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # and never the end of its headers
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_other_paths_and_methods(served: tuple[HealthServer, dict[str, str]]) -> None:
    server, _ = served
    assert (await get(server.port, "/"))[0] == 404
    assert (await get(server.port, "/metrics"))[0] == 404
    status, _ = await exchange(server.port, b"POST /healthz HTTP/1.1\r\n\r\n")
    assert status == 405
    answer = await asyncio.open_connection("127.0.0.1", server.port)
    reader, writer = answer
    writer.write(b"HEAD /healthz HTTP/1.1\r\n\r\n")
    head = await reader.read()
    writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n\r\n"), "HEAD: no body"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"get /healthz HTTP/1.1\r\n\r\n",
        b"GET /h\xffz HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # TLS spoken to plain HTTP
    ],
)
async def test_a_malformed_request_gets_400_and_the_server_goes_on(
    served: tuple[HealthServer, dict[str, str]], request_bytes: bytes
) -> None:
    server, _ = served
    status, body = await exchange(server.port, request_bytes)
    assert status == 400, body
    assert await get(server.port, "/healthz") == (200, {"status": "alive"})


async def test_oversized_requests_get_431(served: tuple[HealthServer, dict[str, str]]) -> None:
    server, _ = served
    long_line = b"GET /" + b"a" * (MAX_LINE_BYTES + 10) + b" HTTP/1.1\r\n\r\n"
    assert (await exchange(server.port, long_line))[0] in (431, 0)  # 0: reset while sending
    many = b"".join(b"X-Filler: " + b"b" * 1000 + b"\r\n" for _ in range(MAX_HEADER_BYTES // 900))
    assert (await exchange(server.port, b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n"))[0] in (
        431,
        0,
    )
    assert await get(server.port, "/healthz") == (200, {"status": "alive"})


async def test_a_request_cut_short_gets_400(served: tuple[HealthServer, dict[str, str]]) -> None:
    server, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: pro")
    writer.write_eof()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert await get(server.port, "/healthz") == (200, {"status": "alive"})


async def test_connections_past_the_limit_are_closed_unanswered(
    served: tuple[HealthServer, dict[str, str]],
) -> None:
    """Idle connections hold their slots until their deadline; one more is closed at once,
    and once they are gone the server answers again."""
    server, _ = served
    idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(MAX_CONNECTIONS)]
    try:
        assert await wait_for(lambda: get(server.port, "/healthz"), lambda s, _: s == 0) == (0, {})
    finally:
        for _, writer in idle:
            writer.close()
    assert await wait_for(lambda: get(server.port, "/healthz"), lambda s, _: s == 200) == (
        200,
        {"status": "alive"},
    )


async def test_close_is_idempotent_and_ends_open_connections() -> None:
    server = await HealthServer(lambda: {}, host="127.0.0.1", port=0).start()
    port = server.port
    _, idle = await asyncio.open_connection("127.0.0.1", port)  # sends nothing
    await asyncio.sleep(0)
    await server.close()
    await server.close()
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        await get(port, "/healthz")


async def test_a_taken_port_is_a_config_error() -> None:
    async with HealthServer(lambda: {}, host="127.0.0.1", port=0) as first:
        with pytest.raises(ConfigError, match="cannot listen"):
            await HealthServer(lambda: {}, host="127.0.0.1", port=first.port).start()


# -- what the runner reports of its replicas -----------------------------------------------


@pytest.mark.integration
async def test_metrics_answers_the_exposition_with_its_content_type() -> None:
    body = b"# TYPE up gauge\nup 1.0\n"
    content_type = "text/plain; version=0.0.4; charset=utf-8"
    async with HealthServer(
        lambda: {}, host="127.0.0.1", port=0, metrics=lambda: (body, content_type)
    ) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: prometheus\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        head, _, got = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert f"Content-Type: {content_type}\r\n".encode() in head
        assert f"Content-Length: {len(body)}".encode() in head
        assert got == body
        assert await get(server.port, "/metrics/") == (404, {"error": "no such path: /metrics/"})
        assert (await exchange(server.port, b"PUT /metrics HTTP/1.1\r\n\r\n"))[0] == 405


async def test_metrics_is_404_without_a_source_and_500_when_the_source_fails() -> None:
    async with HealthServer(lambda: {}, host="127.0.0.1", port=0) as server:
        assert (await get(server.port, "/metrics"))[0] == 404

    def broken() -> tuple[bytes, str]:
        raise RuntimeError("collector broke")

    async with HealthServer(lambda: {}, host="127.0.0.1", port=0, metrics=broken) as server:
        assert await get(server.port, "/metrics") == (
            500,
            {"error": "metrics exposition failed: collector broke"},
        )
        assert await get(server.port, "/healthz") == (200, {"status": "alive"})


async def test_readiness_follows_a_replicas_lifecycle(mesh: Mesh, echo: EchoAgent) -> None:
    (replica,) = await mesh.start_replicas(echo.agent)
    assert readiness([replica]) == {"echo": "running"}
    assert readiness([replica], stopping=True) == {"echo": "draining"}, "on SIGTERM, at once"
    await replica.drain()
    assert readiness([replica]) == {"echo": "stopped"}
    assert readiness([replica], stopping=True) == {"echo": "stopped"}
    fresh = Replica(echo.agent, mesh.settings, mesh.identity("echo"), roots=mesh.roots)
    assert replica_state(fresh) == "starting"


# -- a jetmesh run process -----------------------------------------------------------------


@pytest.fixture
def late_servers(tmp_path: Path) -> Iterator[tuple[NatsServer, RedisServer]]:
    """Servers of this test's own, not started yet: the test starts and stops them."""
    nats_server = NatsServer(data_dir=tmp_path / "nats")
    redis_server = RedisServer(data_dir=tmp_path / "redis")
    try:
        yield nats_server, redis_server
    finally:
        nats_server.stop()
        redis_server.stop()


def start_run(settings: MeshSettings, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``jetmesh run tests.harness.agents:agent --health-port <port>`` from the repo root."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jetmesh.cli",
                "run",
                "tests.harness.agents:agent",
                "--health-port",
                str(port),
            ],
            stdout=out,
            stderr=out,
            env=settings_env(settings),
            cwd=REPO_ROOT,
            start_new_session=True,
        )


@pytest.mark.integration
@pytest.mark.fault
@pytest.mark.timeout(120)
async def test_a_run_process_reports_its_readiness(
    late_servers: tuple[NatsServer, RedisServer], tmp_path: Path
) -> None:
    """Alive before the servers are up, ready once its replica runs, not ready while
    nats-server is away and ready again after; on SIGTERM not ready ("draining") at once
    while it finishes its task, then exit 0. Bad requests along the way change nothing."""
    nats_server, redis_server = late_servers
    settings = isolated_settings(nats_server.url, redis_server.url, tmp_path)
    settings = settings.model_copy(update={"drain_timeout_s": 30.0})
    keys = KeyStore(settings.resolved_keys_dir)
    keys.init_root()  # the worker's identity is issued on the spot
    ingress = keys.issue("cli", subjects=Subjects(settings.subject_prefix), ttl_s=600, ingress=True)
    port = free_port()
    log = tmp_path / "worker.log"
    proc = start_run(settings, port, log)
    try:
        alive = await wait_for(lambda: get(port, "/healthz"), lambda s, _: s == 200)
        assert alive == (200, {"status": "alive"}), log.read_text()
        assert await get(port, "/readyz") == (
            503,
            {"status": "not ready", "replicas": {"worker": "starting"}},
        )
        assert (await get(port, "/nowhere"))[0] == 404
        assert (await exchange(port, b"NOT HTTP AT ALL\r\n\r\n"))[0] == 400
        huge = b"GET /readyz HTTP/1.1\r\nX: " + b"z" * (MAX_LINE_BYTES * 4) + b"\r\n\r\n"
        assert (await exchange(port, huge))[0] in (431, 0)

        await asyncio.to_thread(redis_server.start)
        await asyncio.to_thread(nats_server.start)
        ready = await wait_for(lambda: get(port, "/readyz"), lambda s, _: s == 200)
        assert ready == (200, {"status": "ready", "replicas": {"worker": "running"}}), (
            log.read_text()
        )

        await asyncio.to_thread(nats_server.stop)
        away = await wait_for(lambda: get(port, "/readyz"), lambda s, _: s == 503)
        assert away == (503, {"status": "not ready", "replicas": {"worker": "reconnecting"}})
        assert await get(port, "/healthz") == (200, {"status": "alive"})
        await asyncio.to_thread(nats_server.start)
        back = await wait_for(lambda: get(port, "/readyz"), lambda s, _: s == 200)
        assert back == (200, {"status": "ready", "replicas": {"worker": "running"}})

        async with MeshClient(settings, ingress, roots=keys.roots()) as client:
            token = client.mint_token("alice")
            answer = asyncio.create_task(
                client.request("worker", Job(7, sleep_s=3.0), token=token, returns=Done)
            )
            await asyncio.sleep(1.0)  # the worker has it (its handler runs for 3 s)
            proc.send_signal(signal.SIGTERM)
            draining = await wait_for(lambda: get(port, "/readyz"), lambda s, _: s == 503)
            assert draining == (
                503,
                {"status": "not ready", "replicas": {"worker": "draining"}},
            )
            assert proc.poll() is None, "still draining: its task runs for 3 s"
            assert await get(port, "/healthz") == (200, {"status": "alive"})
            done = await answer
            assert (done.id, done.by) == (7, str(proc.pid)), "finished by the drain"
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()
        with pytest.raises(ConnectionRefusedError):
            await get(port, "/healthz")  # closed with the process
        assert f"health: http://127.0.0.1:{port}/healthz" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
