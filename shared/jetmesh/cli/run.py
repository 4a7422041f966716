"""``jetmesh run module:agent``: one replica of each named agent, in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .._exceptions import ConfigError
from ..runtime.runner import load_agent, run_forever
from .common import err_console, settings


def run(
    targets: list[str] = typer.Argument(..., help="module:attribute of each Agent to run"),
) -> None:
    """Run a replica of each agent until SIGTERM or Ctrl-C, then drain. Start the same
    command again to add a replica: replicas share the role's work."""
    sys.path.insert(0, str(Path.cwd()))
    try:
        agents = [load_agent(t) for t in targets]
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        run_forever(agents, settings())
    except ConfigError as exc:  # not provisioned, refused by the servers
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
