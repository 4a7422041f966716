"""The embedded stack: detached servers under a state directory, pid files, reuse, refusal."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jetmesh.embedded import (
    EmbeddedStack,
    Endpoint,
    NatsServer,
    RedisServer,
    ServerStartError,
    ServerState,
    StackStatus,
    free_port,
    port_open,
)
from jetmesh.embedded.pids import pid_alive
from jetmesh.embedded.probe import speaks
from jetmesh.settings import MeshSettings

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[2] / "shared"


def assert_gone(*pids: int | None) -> None:
    """Fail unless every pid has exited."""
    for pid in pids:
        assert pid is not None
        assert not pid_alive(pid), f"process {pid} is still running"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.4.5.6", True),
        ("localhost", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("[::]", False),
        ("example.com", False),
    ],
)
def test_endpoint_loopback(host: str, loopback: bool) -> None:
    endpoint = Endpoint.parse(f"nats://{host}:4222", default_port=1)
    assert endpoint.port == 4222
    assert endpoint.is_loopback is loopback


def stack_settings(
    state_dir: Path, *, nats_url: str | None = None, redis_url: str | None = None
) -> MeshSettings:
    """Settings for a stack in ``state_dir``, on free loopback ports unless given URLs."""
    return MeshSettings(
        state_dir=state_dir,
        nats_url=nats_url or f"nats://127.0.0.1:{free_port()}",
        redis_url=redis_url or f"redis://127.0.0.1:{free_port()}/0",
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    """An embedded stack on free ports, brought down after the test whatever happened."""
    stack = EmbeddedStack(stack_settings(tmp_path / "state"))
    yield stack
    stack.down()


def assert_stopped(status: StackStatus) -> None:
    for server in (status.nats, status.redis):
        assert server.state is ServerState.STOPPED
        assert server.pid is None
    assert not status.running


def test_stack_up_status_reuse_down(stack: EmbeddedStack) -> None:
    assert_stopped(stack.status())

    started = stack.up()
    assert (started.nats.state, started.redis.state) == (ServerState.STARTED,) * 2
    pids = (started.nats.pid, started.redis.pid)
    assert all(pid is not None and pid_alive(pid) for pid in pids)
    assert stack.pid_file("nats").read_text().strip() == str(started.nats.pid)
    assert stack.pid_file("redis").read_text().strip() == str(started.redis.pid)
    assert (stack.state_dir / "nats" / "jetstream").is_dir()

    running = stack.status()
    assert (running.nats.state, running.redis.state) == (ServerState.RUNNING,) * 2
    assert (running.nats.pid, running.redis.pid) == pids

    again = stack.up()
    assert (again.nats.state, again.redis.state) == (ServerState.REUSED,) * 2
    assert (again.nats.pid, again.redis.pid) == pids

    assert_stopped(stack.down())
    assert_gone(*pids)
    assert not stack.pid_file("nats").exists()
    assert not stack.pid_file("redis").exists()
    assert_stopped(stack.down())
    assert_stopped(stack.status())


def test_stack_servers_outlive_the_process_that_started_them(stack: EmbeddedStack) -> None:
    settings = {"nats_url": stack.status().nats.url, "redis_url": stack.status().redis.url}
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from jetmesh.embedded import EmbeddedStack\n"
        "from jetmesh.settings import MeshSettings\n"
        "s = MeshSettings(state_dir=Path(sys.argv[1]), **json.loads(sys.argv[2]))\n"
        "st = EmbeddedStack(s).up()\n"
        "print(json.dumps([st.nats.pid, st.redis.pid]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(stack.state_dir), json.dumps(settings)],
        env={"PYTHONPATH": str(SHARED), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pids = tuple(json.loads(result.stdout))
    status = stack.status()
    assert status.running
    assert (status.nats.pid, status.redis.pid) == pids
    assert_stopped(stack.down())
    assert_gone(*pids)


def test_stack_reuses_a_foreign_server_and_leaves_it_running(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    stack = EmbeddedStack(stack_settings(tmp_path, nats_url=nats_server.url))
    try:
        status = stack.up()
        assert status.nats.state is ServerState.REUSED
        assert not status.nats.owned
        assert not stack.pid_file("nats").exists()
        assert status.redis.state is ServerState.STARTED
        redis_pid = status.redis.pid
    finally:
        after = stack.down()
    assert after.nats.state is ServerState.RUNNING
    assert after.redis.state is ServerState.STOPPED
    assert nats_server.running
    assert port_open(nats_server.host, nats_server.port)
    assert_gone(redis_pid)


def test_stack_down_leaves_a_stranger_pid_alone(stack: EmbeddedStack) -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        stack.state_dir.mkdir(parents=True)
        stack.pid_file("nats").write_text(f"{stranger.pid}\n")
        assert stack.status().nats.pid is None
        assert_stopped(stack.down())
        assert stranger.poll() is None
        assert not stack.pid_file("nats").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_stack_up_rolls_back_when_redis_cannot_start(stack: EmbeddedStack) -> None:
    (stack.state_dir / "redis").parent.mkdir(parents=True)
    (stack.state_dir / "redis").write_text("a file where the data directory should be")
    with pytest.raises(FileExistsError):
        stack.up()
    assert_stopped(stack.status())
    assert not stack.pid_file("nats").exists()


@pytest.mark.parametrize(
    ("nats_url", "redis_url"),
    [
        ("nats://10.1.2.3:4222", None),
        ("nats://0.0.0.0:4222", None),
        (None, "redis://example.com:6379/0"),
    ],
)
def test_stack_up_refuses_a_non_loopback_url(
    tmp_path: Path, nats_url: str | None, redis_url: str | None
) -> None:
    stack = EmbeddedStack(stack_settings(tmp_path, nats_url=nats_url, redis_url=redis_url))
    with pytest.raises(ValueError, match="loopback only"):
        stack.up()
    assert not stack.pid_file("nats").exists()
    assert not stack.pid_file("redis").exists()
    assert not (tmp_path / "nats").exists()


class Web:
    """A web server on a port handed out for a mesh server (another program took it)."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), BaseHTTPRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return int(self.server.server_address[1])

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("kind", ["nats", "redis"])
def test_stack_up_refuses_a_port_answered_by_another_program(tmp_path: Path, kind: str) -> None:
    """A test's web server once bound the port handed out for Redis first; ``up`` took it
    for Redis, and the admin step failed on a protocol error naming neither."""
    with Web() as port:
        if kind == "nats":
            settings = stack_settings(tmp_path, nats_url=f"nats://127.0.0.1:{port}")
        else:
            settings = stack_settings(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
        stack = EmbeddedStack(settings, timeout=5.0)
        with pytest.raises(ServerStartError, match=f"does not speak {kind} answers at"):
            stack.up()
        assert_stopped_but(stack.status(), kind)
        assert not stack.pid_file("nats").exists()
        assert not stack.pid_file("redis").exists()


def assert_stopped_but(status: StackStatus, kind: str) -> None:
    """Everything the stack owns is stopped; ``kind``'s port is the stranger's, and
    ``status`` says so."""
    for server in (status.nats, status.redis):
        assert server.pid is None
        expected = ServerState.FOREIGN if server.name == kind else ServerState.STOPPED
        assert server.state is expected
        assert not server.running


def test_speaks_tells_the_servers_from_a_web_server(
    nats_server: NatsServer, redis_server: RedisServer
) -> None:
    redis = redis_server
    with Web() as web:
        assert speaks(nats_server.host, nats_server.port, "nats")
        assert not speaks(nats_server.host, nats_server.port, "redis")
        assert speaks(redis.host, redis.port, "redis")
        assert not speaks(redis.host, redis.port, "nats", timeout=0.5)  # Redis says nothing
        assert not speaks("127.0.0.1", web, "nats", timeout=0.5)
        assert not speaks("127.0.0.1", web, "redis")
        assert not speaks("127.0.0.1", free_port(), "nats")  # nothing there
