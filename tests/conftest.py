"""Fixtures shared by all tests: real embedded servers and per-test isolated settings.

Session servers (``nats_server``, ``redis_server``) are shared by every test, so each test gets
its own subject prefix, stream names and bucket name through ``settings``. Tests that kill or
restart a server use the ``fresh_*`` fixtures, which give them servers of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from jetmesh.embedded import NatsServer, RedisServer
from jetmesh.settings import MeshSettings

pytest_plugins = ["tests.harness.pki", "tests.harness.mesh_fixtures"]
"""The fixtures of tests/harness: keys and envelopes (``pki``, ``envelope``, ``chain``,
``sealed``) and an in-process mesh on the session servers (``mesh``, ``secured``,
``echo``, ``agent_processes``)."""


def isolated_settings(nats_url: str, redis_url: str, state_dir: Path) -> MeshSettings:
    """Return settings whose subjects, streams and key bucket no other test shares.

    Streams and buckets are global to a NATS server, so the subject prefix alone does not
    isolate tests that share one; every name gets the same random tag.

    Args:
        nats_url: The NATS server to use.
        redis_url: The Redis server to use.
        state_dir: The test's own state directory.
    """
    tag = uuid4().hex[:8]
    return MeshSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        state_dir=state_dir,
        subject_prefix=f"t{tag}",
        tasks_stream=f"T{tag}_TASKS",
        events_stream=f"T{tag}_EVENTS",
        dlq_stream=f"T{tag}_DLQ",
        registry_bucket=f"T{tag}_KEYS",
        # small streams: JetStream reserves each stream's max_bytes on the session server
        tasks_max_bytes=8 * 1024 * 1024,
        events_max_bytes=16 * 1024 * 1024,
        dlq_max_bytes=4 * 1024 * 1024,
        advisories_max_bytes=1024 * 1024,
    )


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server with JetStream for the whole session, on a free loopback port."""
    with NatsServer(data_dir=tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session, on a free loopback port."""
    with RedisServer(data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def fresh_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, which it may kill, stop and start again."""
    with NatsServer(data_dir=tmp_path / "fresh-nats") as server:
        yield server


@pytest.fixture
def fresh_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill, stop and start again."""
    with RedisServer(data_dir=tmp_path / "fresh-redis") as server:
        yield server


@pytest.fixture
def settings(nats_server: NatsServer, redis_server: RedisServer, tmp_path: Path) -> MeshSettings:
    """Isolated settings on the session servers."""
    return isolated_settings(nats_server.url, redis_server.url, tmp_path)


@pytest.fixture
def fresh_settings(
    fresh_nats_server: NatsServer, fresh_redis_server: RedisServer, tmp_path: Path
) -> MeshSettings:
    """Isolated settings on this test's own servers."""
    return isolated_settings(fresh_nats_server.url, fresh_redis_server.url, tmp_path)
