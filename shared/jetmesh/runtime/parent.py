"""Stopping with the process that started this one.

A supervisor (``jetmesh launch``, a load run, the demo) stops its agent processes when it
is told to stop, but one killed outright (SIGKILL, the OOM killer) cannot: its children,
each in a session of its own, would keep taking tasks with no one to stop them, and a
supervisor started again would start a second set beside them. So a child started with
``jetmesh run --parent-pid PID`` (as :class:`jetmesh.processes.AgentProcess` starts
every child) watches for its parent and drains once it is gone, as gunicorn's and
uvicorn's workers do: the kernel hands an orphan to init or a subreaper, so its parent's
pid changes.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger("jetmesh.runner")

PARENT_CHECK_S = 1.0
"""How often a child looks for its parent: it drains within about this long of its end."""


async def stop_when_orphaned(
    parent: int, stop: asyncio.Event, *, interval: float = PARENT_CHECK_S
) -> None:
    """Set ``stop`` once ``parent`` is no longer this process's parent (it ended, and this
    process went to init or a subreaper); return when ``stop`` is set either way."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the process that started this one (pid %d) is gone: draining", parent)
            stop.set()
            return
        await asyncio.sleep(interval)
