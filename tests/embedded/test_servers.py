"""The embedded servers: real nats-server and redis-server processes, started and stopped."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jetmesh.embedded import (
    NatsServer,
    RedisServer,
    ServerStartError,
    port_open,
)
from jetmesh.embedded.pids import pid_alive
from jetmesh.settings import MeshSettings

pytestmark = pytest.mark.integration


def assert_gone(*pids: int | None) -> None:
    """Fail unless every pid has exited."""
    for pid in pids:
        assert pid is not None
        assert not pid_alive(pid), f"process {pid} is still running"


async def test_nats_server_runs_jetstream(nats_server: NatsServer, settings: MeshSettings) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        assert nc.max_payload == 1024 * 1024
        js = nc.jetstream()
        before = (await js.account_info()).streams  # the session's server: other tests' too
        subject = f"{settings.subject_prefix}.probe"
        await js.add_stream(name=settings.tasks_stream, subjects=[subject])
        assert (await js.account_info()).streams == before + 1
        ack = await js.publish(subject, b"hello")
        assert (ack.stream, ack.seq) == (settings.tasks_stream, 1)
        await js.delete_stream(settings.tasks_stream)
    finally:
        await nc.close()
    assert (nats_server.store_dir / "jetstream").is_dir()


def test_nats_config_has_no_http_monitoring(tmp_path: Path) -> None:
    server = NatsServer(data_dir=tmp_path, config_extra="# extra line")
    text = server.config_text()
    keys = {line.split(":")[0].strip() for line in text.splitlines() if ":" in line}
    assert keys.isdisjoint({"http", "https", "http_port", "https_port", "monitor_port"})
    assert f"port: {server.port}\n" in text
    assert text.rstrip().endswith("# extra line")


def test_redis_acl_file_under_a_relative_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `jetmesh up` in a project: state dir `.jetmesh`
    acl = Path(".jetmesh") / "users.acl"
    acl.parent.mkdir()
    acl.write_text("user default on >s3cret ~* &* +@all\n")
    server = RedisServer(data_dir=Path(".jetmesh") / "redis", aclfile=acl, password="s3cret")
    with server, redis.Redis.from_url(server.url) as client:
        assert client.ping() is True


def test_redis_server_answers_ping(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "yes"}


def test_redis_password_is_required(tmp_path: Path) -> None:
    with RedisServer(data_dir=tmp_path, password="s3cret/pw") as server:
        no_retry = Retry(NoBackoff(), retries=0)
        anonymous = redis.Redis(host=server.host, port=server.port, retry=no_retry)
        with anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping() is True
        pid = server.pid
    assert_gone(pid)


@pytest.mark.fault
def test_redis_data_survives_restart(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    with redis.Redis.from_url(server.url) as client:
        client.set("answer", "42")
    first_pid = server.pid
    server.stop()
    server.stop()
    assert not server.running
    assert server.pid is None
    assert_gone(first_pid)
    assert not port_open(server.host, server.port)
    server.start()
    assert server.pid != first_pid
    with redis.Redis.from_url(server.url) as client:
        assert client.get("answer") == b"42"


@pytest.mark.fault
def test_kill_closes_the_port_and_allows_restart(
    fresh_nats_server: NatsServer, fresh_redis_server: RedisServer
) -> None:
    for server in (fresh_nats_server, fresh_redis_server):
        pid = server.pid
        assert port_open(server.host, server.port)
        server.kill()
        server.kill()
        assert not server.running
        assert not port_open(server.host, server.port)
        assert_gone(pid)
        server.start()
        assert port_open(server.host, server.port)


def test_start_refuses_a_port_in_use(redis_server: RedisServer, tmp_path: Path) -> None:
    intruder = RedisServer(redis_server.port, data_dir=tmp_path)
    with pytest.raises(ServerStartError, match="already answers"):
        intruder.start()
    assert not intruder.running
    assert redis_server.running


def test_start_failure_reports_the_log_tail(tmp_path: Path) -> None:
    server = NatsServer(data_dir=tmp_path, config_extra="this is { not valid")
    with pytest.raises(ServerStartError, match=r"(?s)exited.*Parse error"):
        server.start(timeout=5.0)
    assert not server.running
    assert not port_open(server.host, server.port)


def test_redis_serves_once_started_even_while_a_large_file_loads(
    fresh_redis_server: RedisServer,
) -> None:
    """``start`` returns once the append-only file is loaded, not when the port opens (a
    client's first command would be ``LOADING``)."""
    server = fresh_redis_server
    keys = 400_000
    with redis.Redis.from_url(server.url) as client:
        pipe = client.pipeline(transaction=False)
        for n in range(keys):
            pipe.set(f"k{n}", n)
        pipe.execute()
    server.stop()
    server.start()
    with redis.Redis.from_url(server.url) as client:
        assert client.dbsize() == keys
