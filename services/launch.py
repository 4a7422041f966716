"""Run every role of a mesh as its own process (``python -m services.support``): one
``jetmesh run <package>.<role>:agent`` child per role, on this process's ``JETMESH_*``
settings (and any ``extra`` processes, such as the tool gateway), until SIGINT or SIGTERM;
then each child drains and stops."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence

from jetmesh import MeshSettings
from jetmesh.processes import AgentProcess


def launch(
    package: str,
    roles: Sequence[str],
    *,
    extra: Mapping[str, str] | None = None,
    settings: MeshSettings | None = None,
) -> None:
    """Start a process per role of ``package`` (and one per ``extra`` name -> target) on
    ``settings`` (default: this process's), wait for a stop signal, stop them all. Where
    ``jetmesh up`` generated the roles' users, each process connects as its role."""
    settings = settings or MeshSettings()
    started: list[AgentProcess] = []
    stop = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop["now"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        targets = {**{role: f"{package}.{role}:agent" for role in roles}, **(extra or {})}
        for role, target in targets.items():
            log = settings.state_dir / "logs" / f"{role}.log"
            proc = AgentProcess([target], settings, log_file=log).start()
            started.append(proc)
            print(f"{role:<13} pid {proc.pid}  log {log}", flush=True)
        print(f"{package}: {len(started)} roles running; Ctrl-C stops them", flush=True)
        while not stop["now"]:
            signal.pause()
    finally:
        for proc in reversed(started):
            proc.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
