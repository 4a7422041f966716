"""Fault tests use the harness fixtures (an in-process mesh, agent processes), on
streams large enough for their loads (the suite's default streams are small: JetStream
reserves each stream's ``max_bytes`` on the session's server)."""

from pathlib import Path

import pytest

from jetmesh.embedded import NatsServer, RedisServer
from jetmesh.settings import MeshSettings
from tests.conftest import isolated_settings

LOAD_STREAM_BYTES = 256 * 1024 * 1024
"""A thousand workflows of a fault run store about 8,000 tasks and 40,000 events."""


@pytest.fixture
def settings(nats_server: NatsServer, redis_server: RedisServer, tmp_path: Path) -> MeshSettings:
    base = isolated_settings(nats_server.url, redis_server.url, tmp_path)
    return base.model_copy(
        update={"tasks_max_bytes": LOAD_STREAM_BYTES, "events_max_bytes": LOAD_STREAM_BYTES}
    )
