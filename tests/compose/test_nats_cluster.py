"""compose/nats/nats.conf, the one file of the three NATS nodes: valid for nats-server with
its environment and the generated users, and, run as three processes on loopback, a
JetStream cluster that keeps a stream on all three.

Only what a container's network gives each node is rewritten for loopback: its ports
(clients, cluster routes, monitoring) and its store directory; the routes come from the
same environment variables compose sets."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from jetmesh.embedded import free_port
from jetmesh.embedded.binaries import nats_server_binary
from tests.compose.conftest import COMPOSE_DIR, Processes, load_compose

pytestmark = pytest.mark.integration

NATS_CONF = COMPOSE_DIR / "nats" / "nats.conf"
READY_TIMEOUT_S = 30.0
T = TypeVar("T")


def compose_env(node: str) -> dict[str, str]:
    """The environment compose gives ``node`` (nats-1, nats-2, nats-3)."""
    env: dict[str, str] = load_compose()["services"][node]["environment"]
    return {k: str(v) for k, v in env.items()}


def node_dir(base: Path, name: str, secrets: Path, text: str | None = None) -> Path:
    """A node's directory as its container has it: the config and, beside it, the users
    file that compose mounts there."""
    directory = base / name
    directory.mkdir(parents=True)
    (directory / "nats.conf").write_text(text if text is not None else NATS_CONF.read_text())
    shutil.copy(secrets / "servers" / "nats-users.conf", directory / "nats-users.conf")
    return directory


def check(conf: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_server_binary(), "-t", "-c", str(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_config_is_valid_with_the_compose_environment(deploy_secrets: Path, tmp_path: Path) -> None:
    conf = node_dir(tmp_path, "nats-1", deploy_secrets) / "nats.conf"
    done = check(conf, compose_env("nats-1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout + done.stderr


def test_config_refuses_a_node_without_its_name_or_users(
    deploy_secrets: Path, tmp_path: Path
) -> None:
    conf = node_dir(tmp_path, "nats-1", deploy_secrets) / "nats.conf"
    env = compose_env("nats-1")
    del env["NATS_SERVER_NAME"]
    done = check(conf, env)
    assert done.returncode != 0
    assert "NATS_SERVER_NAME" in done.stderr

    (conf.parent / "nats-users.conf").unlink()
    done = check(conf, compose_env("nats-1"))
    assert done.returncode != 0
    assert "nats-users.conf" in done.stderr


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not in nats.conf once"
    return text.replace(old, new)


def loopback_config(client: int, cluster: int, http: int, store: Path) -> str:
    text = NATS_CONF.read_text()
    text = replace_once(text, "\nport: 4222\n", f"\nhost: 127.0.0.1\nport: {client}\n")
    text = replace_once(text, "http_port: 8222", f'http: "127.0.0.1:{http}"')
    text = replace_once(text, "listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{cluster}")
    return replace_once(text, 'store_dir: "/data/jetstream"', f'store_dir: "{store}"')


def monitoring(http_port: int, endpoint: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/{endpoint}", timeout=5) as got:
        return json.load(got)


def wait_healthy(http_port: int, proc: subprocess.Popen[bytes], log: str) -> None:
    """Until the node's /healthz says JetStream is current (the cluster has a meta leader)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"nats-server exited:\n{log}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"no healthy node at :{http_port} in {READY_TIMEOUT_S} s")


async def retried(ask: Callable[[], Awaitable[T]]) -> T:
    """``ask()``'s answer, asking again while the cluster settles: nodes are healthy once
    they have a meta leader, before every peer has joined it, and a new stream's subject
    reaches the other nodes a moment after it was created."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            return await ask()
        except (APIError, NoStreamResponseError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_three_nodes_form_a_jetstream_cluster(
    deploy_secrets: Path, tmp_path: Path, processes: Processes
) -> None:
    nodes = ["nats-1", "nats-2", "nats-3"]
    ports = {n: (free_port(), free_port(), free_port()) for n in nodes}  # client, route, http
    routes = {
        f"NATS_ROUTE_{i}": f"nats-route://127.0.0.1:{ports[n][1]}"
        for i, n in enumerate(nodes, start=1)
    }
    started = {}
    for node in nodes:
        env = compose_env(node)
        assert set(routes) <= set(env), "compose sets every route"
        client, cluster, http = ports[node]
        text = loopback_config(client, cluster, http, tmp_path / node / "jetstream")
        conf = node_dir(tmp_path, node, deploy_secrets, text) / "nats.conf"
        argv = [nats_server_binary(), "--config", str(conf)]
        started[node] = processes.start(node, argv, {**env, **routes})
    for node in nodes:
        await asyncio.to_thread(wait_healthy, ports[node][2], started[node], processes.log(node))

    seed = (deploy_secrets / "admin" / "nats" / "admin.nk").read_text().strip()
    urls = [f"nats://127.0.0.1:{ports[n][0]}" for n in nodes]
    nc = await nats.connect(urls, nkeys_seed_str=seed, allow_reconnect=False)
    try:
        for node in nodes:  # each stores a message on disk before acknowledging it
            varz = await asyncio.to_thread(monitoring, ports[node][2], "varz")
            assert varz["jetstream"]["config"]["sync_always"] is True
        js = nc.jetstream()
        config = StreamConfig(
            name="COMPOSE_R3", subjects=["compose.r3"], num_replicas=3, storage=StorageType.FILE
        )
        await retried(lambda: js.add_stream(config))
        once = {"Nats-Msg-Id": "compose-r3-1"}  # asked again: stored once
        ack = await retried(lambda: js.publish("compose.r3", b"stored on three", headers=once))
        assert ack.seq == 1
        info = await js.stream_info("COMPOSE_R3")
        assert info.cluster is not None
        peers = {info.cluster.leader, *(r.name for r in info.cluster.replicas or [])}
        assert peers == set(nodes)
    finally:
        await nc.close()

    # the last node alone serves the stream the first one was asked for
    nc = await nats.connect(urls[-1:], nkeys_seed_str=seed, allow_reconnect=False)
    try:
        msg = await nc.jetstream().get_msg("COMPOSE_R3", 1)
        assert msg.data == b"stored on three"
    finally:
        await nc.close()
