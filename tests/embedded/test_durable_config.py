"""What the servers promise about acknowledged writes is set in their configuration: the
embedded servers and the deployment files in compose/ agree, and both servers accept it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import redis

from jetmesh.embedded import NatsServer, RedisServer, free_port, wait_for_port
from jetmesh.embedded.binaries import nats_server_binary, redis_server_binary

DEPLOY = Path(__file__).resolve().parents[2] / "compose"


def jetstream_block(config: str) -> str:
    found = re.search(r"jetstream\s*\{([^}]*)\}", config)
    assert found is not None, "no jetstream block"
    return found.group(1)


def test_embedded_nats_fsyncs_every_stored_message(tmp_path: Path) -> None:
    block = jetstream_block(NatsServer(data_dir=tmp_path).config_text())
    assert re.search(r"^\s*sync_interval:\s*always\s*$", block, re.M)


def test_deployed_nats_config_fsyncs_and_is_valid() -> None:
    config = DEPLOY / "nats-server.conf"
    assert re.search(r"^\s*sync_interval:\s*always\s*$", jetstream_block(config.read_text()), re.M)
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    assert "is valid" in checked.stdout + checked.stderr


def test_embedded_redis_fsyncs_every_write(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}


def test_deployed_redis_config_is_what_a_server_runs_with(tmp_path: Path) -> None:
    port = free_port()
    # Only where it listens and writes differ from the container (redis applies `dir` as it
    # reads the file, so the container's /data is replaced in a copy).
    config = tmp_path / "redis.conf"
    text = (DEPLOY / "redis.conf").read_text()
    config.write_text(re.sub(r"^dir .*$", f"dir {tmp_path}", text, flags=re.M))
    proc = subprocess.Popen(
        [redis_server_binary(), str(config), "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=10.0, alive=lambda: proc.poll() is None)
        client = redis.Redis(port=port, socket_connect_timeout=1)
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("save") == {"save": ""}
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)
