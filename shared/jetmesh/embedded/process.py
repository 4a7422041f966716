"""A server binary run as a child process that is ready once its TCP port accepts connections.

Example:
    >>> from pathlib import Path
    >>> from jetmesh.embedded import RedisServer
    >>> with RedisServer(data_dir=Path("/tmp/redis-demo")) as redis:  # doctest: +SKIP
    ...     print(redis.url)
    redis://127.0.0.1:40023/0
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from jetmesh._exceptions import ServerStartError
from jetmesh.embedded.guard import unwatch, watch
from jetmesh.embedded.pids import pid_alive, signal_group, spawn_detached, terminate_pid
from jetmesh.embedded.ports import free_port, host_port, port_open, wait_for_port


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` whole with ``text``, readable by this user only (0600): a server's
    configuration with a secret in it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


class ServerProcess(ABC):
    """One server process on ``host:port`` with its files in ``data_dir``.

    ``start`` and ``stop`` are idempotent, and a stopped server can be started again on the
    same port and data. Used as a context manager it starts on entry and stops on exit.

    Args:
        port: TCP port; None picks a free one now, so ``url`` is known before ``start``.
        data_dir: Directory for data, config and the log; created on start.
        host: Address to listen on.
        log_file: Where stdout and stderr go; defaults to ``<data_dir>/<name>.log``.
    """

    name: str = "server"
    """Short name, used in file names and messages."""

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.data_dir = Path(data_dir)
        self.log_file = log_file if log_file is not None else self.data_dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._watcher: subprocess.Popen[bytes] | None = None
        """Stops the server should this process end without stopping it (:mod:`.guard`)."""

    @abstractmethod
    def command(self) -> list[str]:
        """Return the command line that runs the server in the foreground."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL clients connect to."""

    @property
    def address(self) -> str:
        """``host:port``, IPv6 hosts in brackets."""
        return host_port(self.host, self.port)

    @property
    def pid(self) -> int | None:
        """The process id while running, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process started by ``start`` is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def prepare(self) -> None:
        """Create the data directory and any files ``command`` refers to."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until its port accepts connections; no-op if running.

        Args:
            timeout: Seconds to wait for the port.

        Raises:
            ServerStartError: If the port is taken, or the server exits or is not ready in time.
        """
        if self.running:
            return
        self._check_port_free()
        self.prepare()
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._unwatch()  # the watcher of a run that ended on its own, if any
        self._watcher = watch(self._proc.pid)
        self._await_ready(self._proc.pid, timeout, lambda: self.running, self.kill)

    def start_detached(self, timeout: float = 10.0) -> int:
        """Start the server in its own session, not owned by this object, and return its pid.

        The server outlives this Python process; stop it with
        :func:`jetmesh.embedded.pids.terminate_pid`.

        Args:
            timeout: Seconds to wait for the port.

        Raises:
            ServerStartError: If the port is taken, or the server exits or is not ready in time.
        """
        self._check_port_free()
        self.prepare()
        pid = spawn_detached(self.command(), self.log_file)
        self._await_ready(
            pid, timeout, lambda: pid_alive(pid), lambda: terminate_pid(pid, timeout=1.0)
        )
        return pid

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent.

        Args:
            timeout: Seconds to wait for a clean exit before killing.
        """
        proc, self._proc = self._proc, None
        try:
            if proc is None or proc.poll() is not None:
                return
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        finally:
            self._unwatch()

    def kill(self) -> None:
        """Kill the server at once with SIGKILL, as a crash would. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        self._unwatch()

    def _unwatch(self) -> None:
        watcher, self._watcher = self._watcher, None
        unwatch(watcher)

    def log_tail(self, lines: int = 20) -> str:
        """Return the last ``lines`` lines of the log file, or ``""`` if there is none.

        Args:
            lines: How many lines to return.
        """
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_port_free(self) -> None:
        if port_open(self.host, self.port):
            raise ServerStartError(
                f"{self.name} cannot start: something already answers at {self.address}"
            )

    def _await_ready(
        self, pid: int, timeout: float, alive: Callable[[], bool], abort: Callable[[], None]
    ) -> None:
        try:
            deadline = time.monotonic() + timeout
            wait_for_port(self.host, self.port, timeout=timeout, alive=alive)
            self.await_serving(deadline)
        except (TimeoutError, ChildProcessError) as exc:
            abort()
            reason = "exited" if isinstance(exc, ChildProcessError) else f"not ready in {timeout}s"
            raise ServerStartError(
                f"{self.name} (pid {pid}) {reason} at {self.address}; "
                f"log {self.log_file}:\n{self.log_tail()}"
            ) from exc

    def await_serving(self, deadline: float) -> None:
        """Block, once the port is open, until the server answers requests (by default the
        open port is enough; a server that loads its data first waits for that).

        Raises:
            TimeoutError: it still does not serve at ``deadline`` (``time.monotonic()``).
        """
        return

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, pid={self.pid})"
