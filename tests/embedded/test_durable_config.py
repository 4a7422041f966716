"""What the servers promise about acknowledged writes is set in their configuration: the
embedded servers and the deployment files in compose/ agree, and both servers accept it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from jetmesh.embedded import NatsServer, RedisServer

DEPLOY = Path(__file__).resolve().parents[2] / "compose"


def jetstream_block(config: str) -> str:
    found = re.search(r"jetstream\s*\{([^}]*)\}", config)
    assert found is not None, "no jetstream block"
    return found.group(1)


def test_embedded_nats_fsyncs_every_stored_message(tmp_path: Path) -> None:
    block = jetstream_block(NatsServer(data_dir=tmp_path).config_text())
    assert re.search(r"^\s*sync_interval:\s*always\s*$", block, re.M)


def test_deployed_nats_config_fsyncs() -> None:
    """compose/nats/nats.conf; tests/compose runs it as a 3-node cluster."""
    config = (DEPLOY / "nats" / "nats.conf").read_text()
    assert re.search(r"^\s*sync_interval:\s*always\s*$", jetstream_block(config), re.M)


def test_embedded_redis_fsyncs_every_write(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}


@pytest.mark.parametrize("name", ["primary.conf", "replica.conf"])
def test_deployed_redis_config_fsyncs_every_write(name: str) -> None:
    """compose/redis/*.conf; tests/compose runs them and asks the servers what they run with."""
    lines = set((DEPLOY / "redis" / name).read_text().splitlines())
    assert {"appendonly yes", "appendfsync always", 'save ""'} <= lines
