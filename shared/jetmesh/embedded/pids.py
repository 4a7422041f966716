"""Processes known only by pid: detached spawning, liveness, command lines, signals, pid files.

These serve servers that outlive the Python process that started them.

Example:
    >>> import os
    >>> pid_alive(os.getpid())
    True
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

_POLL_S = 0.02


def _reap(pid: int) -> bool:
    """Reap ``pid`` if it is an exited child of this process; True if it was."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command's name (the state first, then
    the parent's pid, ...), or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, as ``/proc/<pid>/stat`` gives it):
    with the pid, names one process even after the pid is given to another. None where
    it cannot be read."""
    fields = stat_fields(pid)
    return fields[19] if fields is not None else None


def _zombie(pid: int) -> bool:
    return (stat_fields(pid) or [""])[0] == "Z"


def pid_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists and has not exited (zombies count as exited).

    Args:
        pid: The process id.
    """
    if pid <= 0 or _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def pid_command(pid: int) -> str:
    """Return the command line of ``pid``, arguments joined by spaces, or ``""`` if unknown.

    Reads ``/proc/<pid>/cmdline`` and falls back to ``ps`` where there is no ``/proc``.

    Args:
        pid: The process id.
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return ""
        result = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid``, or to ``pid`` alone if it leads none.

    Servers are started in their own session, so their group also holds any children they
    forked (a Redis background save, for example). A process that is gone is ignored.

    Args:
        pid: The process id.
        sig: The signal to send.
    """
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            os.kill(pid, sig)


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; True if it did.

    Args:
        pid: The process id.
        timeout: Seconds to wait.
    """
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Wait up to ``timeout`` seconds for every one of ``pids`` to exit; the pids still
    alive then (empty when all are gone).

    Args:
        pids: The process ids.
        timeout: Seconds to wait.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(_POLL_S)
    return [p for p in pids if pid_alive(p)]


def terminate_pid(pid: int, timeout: float = 10.0) -> None:
    """Stop ``pid``: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL its group.

    Args:
        pid: The process id.
        timeout: Seconds to wait for a clean exit before killing.

    Raises:
        TimeoutError: If the process survives SIGKILL for a further 5 seconds.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_exit(pid, timeout):
        return
    signal_group(pid, signal.SIGKILL)
    if not wait_exit(pid, 5.0):
        raise TimeoutError(f"process {pid} survived SIGKILL")


def spawn_detached(argv: list[str], log_file: Path) -> int:
    """Start ``argv`` in a new session, output appended to ``log_file``, and return its pid.

    Nothing here waits for the process: it keeps running after this Python process exits.

    Args:
        argv: The program and its arguments.
        log_file: Where its stdout and stderr go.

    Raises:
        OSError: If the program cannot be started.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsid=True)


def read_pid_file(path: Path) -> int | None:
    """Return the pid stored in ``path``, or None if the file is missing or malformed.

    Args:
        path: The pid file.
    """
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid_file(path: Path, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically, creating parent directories.

    Args:
        path: The pid file.
        pid: The process id.

    Raises:
        OSError: If the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)
