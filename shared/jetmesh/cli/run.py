"""``jetmesh run module:agent``: one replica of each named agent, in this process; with
``--health-port``, its health endpoints (docs/configuration.md, "Health endpoints")."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import typer

from .._exceptions import ConfigError
from ..runtime.agent import Agent
from ..runtime.gc_tuning import settle_heap
from ..runtime.runner import load_agent, serve
from ..settings import MeshSettings
from .common import err_console, settings


def run_forever(
    agents: Sequence[Agent], settings: MeshSettings | None = None, *, parent: int | None = None
) -> None:
    """A process's entry point: :func:`~jetmesh.runtime.runner.serve` the agents on
    uvloop when available, until SIGTERM or SIGINT (``jetmesh run``, and a service's
    ``python -m``), or until the process ``parent`` is gone.

    Raises:
        ConfigError: a replica cannot start, or nats-server shut a role out.
    """
    settings = settings or MeshSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settle_heap(settings.gc_young_threshold)
    try:
        import uvloop

        uvloop.run(serve(agents, settings, parent=parent))
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(serve(agents, settings, parent=parent))


def run(
    targets: list[str] = typer.Argument(..., help="module:attribute of each Agent to run"),
    health_port: int | None = typer.Option(
        None,
        "--health-port",
        min=0,
        max=65535,
        help="serve GET /healthz and /readyz on this port (0: a free one, printed); "
        "the address is JETMESH_HEALTH_HOST (default 127.0.0.1)",
    ),
    parent_pid: int | None = typer.Option(
        None,
        "--parent-pid",
        min=1,
        help="drain and exit once the process PID is no longer this one's parent (a "
        "supervisor killed outright); jetmesh launch and load runs set it",
    ),
) -> None:
    """Run a replica of each agent until SIGTERM or Ctrl-C, then drain. Start the same
    command again to add a replica: replicas share the role's work."""
    sys.path.insert(0, str(Path.cwd()))
    s = settings()
    if health_port is not None:
        s = s.model_copy(update={"health_port": health_port})
    try:
        agents = [load_agent(t) for t in targets]
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        run_forever(agents, s, parent=parent_pid)
    except ConfigError as exc:  # not provisioned, refused by the servers
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
