"""Helpers shared by the commands: settings, errors, async entry."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from .._exceptions import MeshError
from ..processes import terminated_as_interrupted
from ..settings import MeshSettings
from ..telemetry.traces import shutdown_tracing
from .render import markup

T = TypeVar("T")

WIDE = 140
"""Width used when output is not a terminal (CI logs, files): trees stay on one line."""

console = Console() if Console().is_terminal else Console(width=WIDE)
err_console = Console(stderr=True)


def settings() -> MeshSettings:
    """Settings from the environment (``JETMESH_*``)."""
    return MeshSettings()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop; print a MeshError as one line and exit 1. The spans
    of a command that traces are exported before it returns. A SIGTERM stops it as Ctrl-C
    does: the coroutine is cancelled, so what it started (servers, agent processes) is
    stopped."""
    try:
        import uvloop

        with terminated_as_interrupted():
            return uvloop.run(coro)
    except MeshError as exc:
        err_console.print(
            f"[red]error:[/red] {type(exc).__name__}: {markup(exc)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except ImportError:  # pragma: no cover
        with terminated_as_interrupted():
            return asyncio.run(coro)
    finally:
        shutdown_tracing()
