"""Agent processes started by a parent (the demo, tests, load harnesses): start each with
``jetmesh run``, wait for its ``ready`` line, stop it with SIGTERM (SIGKILL after a timeout).

A parent stops its children in its ``finally`` blocks and context exits, which Ctrl-C runs
(asyncio cancels the main task) and a plain SIGTERM would not: the process would end at
once and leave its servers and agents running. :func:`terminated_as_interrupted` has a
SIGTERM taken as a Ctrl-C (``timeout``, a CI job's end, ``kill``), so they are stopped."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from ._exceptions import ConfigError
from .embedded.pids import stat_fields
from .settings import MeshSettings

__all__ = [
    "AgentProcess",
    "all_threads_stopped",
    "interruptible",
    "pack",
    "settings_env",
    "start_all",
    "terminated_as_interrupted",
]


def _as_interrupt(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handled as SIGINT is: by asyncio's runner while one runs (the main task
    cancelled, its cleanups run, then KeyboardInterrupt), else as KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job of a shell) or not set from Python
        raise KeyboardInterrupt


@contextlib.contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """Within the block, a SIGTERM stops this process as Ctrl-C does, so that the
    ``finally`` blocks and context exits that stop its child processes and servers run
    (a second one, as a second Ctrl-C, interrupts those too). Only in the main thread
    (elsewhere it does nothing); the SIGTERM handler before it is restored after.

    Example:
        >>> with terminated_as_interrupted():
        ...     signal.getsignal(signal.SIGTERM) is _as_interrupt
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _as_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """A program's main block: a SIGTERM within it is a Ctrl-C
    (:func:`terminated_as_interrupted`), and an interruption that reaches the block's end,
    its cleanups run, ends the program as a shell expects of an interrupted one:
    ``interrupted`` on stderr and exit status 130, no traceback.

    Raises:
        SystemExit: 130, when interrupted.
    """
    try:
        with terminated_as_interrupted():
            yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def pack(roles: Sequence[str], processes: int) -> list[tuple[str, ...]]:
    """``roles`` dealt into ``processes`` groups in turn, as cards are (the first role to
    the first group, the second to the second, ...), each group one process's roles; fewer
    groups when there are fewer roles.

    Example:
        >>> pack(["triage", "billing", "technical", "kb", "critic"], 2)
        [('triage', 'technical', 'critic'), ('billing', 'kb')]

    Raises:
        ValueError: ``processes`` below 1.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    count = min(processes, len(roles))
    return [tuple(roles[i::count]) for i in range(count)]


def settings_env(settings: MeshSettings) -> dict[str, str]:
    """Environment variables that give a child process the same settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, tuple):
            value = "[" + ",".join(str(v) for v in value) + "]"
        env[f"JETMESH_{name.upper()}"] = str(value)
    return env


class AgentProcess:
    """One ``jetmesh run <targets>`` child process, which stops with this one."""

    def __init__(
        self,
        targets: list[str],
        settings: MeshSettings,
        *,
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """
        Args:
            env: variables to set in the process besides the settings (``OTEL_*``, ...).
        """
        self.targets = targets
        self.settings = settings
        self.log_file = log_file
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_line = ""

    def command(self) -> list[str]:
        """Its command line: ``jetmesh run`` of its targets, with this process as its
        parent (``--parent-pid``: it drains once this process is gone, SIGKILLed too)."""
        return [
            sys.executable,
            "-m",
            "jetmesh.cli",
            "run",
            *self.targets,
            "--parent-pid",
            str(os.getpid()),
        ]

    def start(self, timeout: float = 20.0) -> AgentProcess:
        """Start the process and wait until it prints ``ready``.

        Raises:
            ConfigError: it exited or did not become ready in time (the log names why).
        """
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=log,
                env=settings_env(self.settings) | self.env,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
                if b"ready:" in buffer:
                    self.ready_line = buffer.decode(errors="replace").strip()
                    return self
            elif self.proc.poll() is not None:
                break
        self.stop()
        tail = self.log_file.read_text(errors="replace")[-2000:]
        raise ConfigError(f"{' '.join(self.targets)} did not start:\n{tail}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful drain), SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def start_all(
    targets: dict[str, list[str]], settings: MeshSettings, *, log_dir: Path, timeout: float = 30.0
) -> dict[str, AgentProcess]:
    """Start one ``jetmesh run`` process per entry of ``targets`` (name -> agent targets),
    all at once, and wait until each is ready.

    Raises:
        ConfigError: one did not start; those that did are stopped again.
    """
    procs = {
        name: AgentProcess(agents, settings, log_file=log_dir / f"{name}.log")
        for name, agents in targets.items()
    }
    with ThreadPoolExecutor(max_workers=max(len(procs), 1)) as pool:
        futures = {name: pool.submit(p.start, timeout) for name, p in procs.items()}
        problems = []
        for name, future in futures.items():
            try:
                future.result()
            except ConfigError as exc:
                problems.append(f"{name}: {exc}")
    if problems:
        for proc in procs.values():
            proc.stop()
        raise ConfigError("\n".join(problems))
    return procs


def all_threads_stopped(pid: int, timeout: float) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (``T`` in /proc) within
    ``timeout`` (True where /proc is not there to ask): a SIGSTOP takes effect a moment
    after ``os.kill`` returns, and a process may still answer meanwhile."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return True
    give_up = time.monotonic() + timeout
    while True:  # /proc/<tid>/stat is the thread's own, as /proc/<pid>/stat a process's
        tids = [int(tid.name) for tid in tasks.glob("*")]  # none once the process is gone
        states = [fields[0] for tid in tids if (fields := stat_fields(tid))]
        if states and all(state in ("T", "t") for state in states):
            return True
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
