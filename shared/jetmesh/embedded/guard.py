"""A server that stops with the process that started it.

:meth:`~jetmesh.embedded.process.ServerProcess.start` runs a server as a child of this
process, in a session of its own, and stops it when told (a ``with`` block's end, Ctrl-C,
SIGTERM). A process killed outright (SIGKILL, the OOM killer, a harness's last resort)
cannot, and a server binary cannot watch for its parent as ``jetmesh run --parent-pid``
does (:mod:`jetmesh.runtime.parent`); so each server gets a watcher: a small Python
process of the standard library alone that looks every second for its parent (the
server's owner) and for the server, stops the server (SIGTERM to its process group,
SIGKILL after a grace) once the owner is gone, and exits once the server is gone.
:meth:`~jetmesh.embedded.process.ServerProcess.start_detached` (``jetmesh up``'s servers,
meant to outlive the command) starts none.

The watcher knows the server by its pid and its start time (``/proc``), so a pid the
system has given to another process since is never signalled. Where there is no
``/proc``, no watcher is started.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .pids import start_time

WATCH_INTERVAL_S = 1.0
"""How often a watcher looks: a server stops within about this long of its owner's end."""
STOP_GRACE_S = 10.0
"""How long a watcher waits after SIGTERM before it sends SIGKILL."""

_WATCHER = r"""
import os, signal, sys, time

owner, server, started = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
interval, grace = float(sys.argv[4]), float(sys.argv[5])


def alive():
    try:
        with open(f"/proc/{server}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] != "Z" and fields[19] == started


def signal_server(sig):
    try:
        os.killpg(server, sig)
    except OSError:
        pass


while alive():
    if os.getppid() != owner:
        signal_server(signal.SIGTERM)
        end = time.monotonic() + grace
        while alive() and time.monotonic() < end:
            time.sleep(0.1)
        if alive():
            signal_server(signal.SIGKILL)
        break
    time.sleep(interval)
"""


def watch(
    server: int, *, interval: float = WATCH_INTERVAL_S, grace: float = STOP_GRACE_S
) -> subprocess.Popen[bytes] | None:
    """Start the watcher of ``server``, a process group leader this process started; None
    where there is no ``/proc`` (or the server is already gone)."""
    started = start_time(server)
    if started is None:
        return None
    arguments = [str(os.getpid()), str(server), started, str(interval), str(grace)]
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHER, *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def unwatch(watcher: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Stop a watcher whose server this process stopped itself, and reap it."""
    if watcher is None:
        return
    watcher.terminate()
    try:
        watcher.wait(timeout)
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.wait()
