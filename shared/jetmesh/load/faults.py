"""Faults on a schedule during a load run: kill a role's replica, restart a server, pause
a process or a server; and the run that launches the mesh, strikes it and counts what the
faults cost (sent, completed, lost, duplicated, dead-lettered).

A scenario's ``[[faults]]`` (each one a :data:`Fault`) strike at ``at`` seconds from the
measured start, through the :class:`~jetmesh.load.fleet.Fleet` the run launched (so a
scenario with faults needs a ``[mesh]``; a server fault, ``embedded = true``)::

    [[faults]]
    at = 2
    kind = "kill"             # SIGKILL one replica of the role
    role = "echo"
    restart = true            # and start another

    [[faults]]
    at = 5
    kind = "restart-server"   # SIGKILL the embedded server, start it after down_s
    server = "nats"
    down_s = 1

    [[faults]]
    at = 8
    kind = "pause"            # SIGSTOP, then SIGCONT after `seconds`
    target = "redis"          # a server, a role (its oldest process) or a process (echo#2)
    seconds = 2

Each fault becomes a :class:`~jetmesh.load.report.FaultRecord` in the report;
:func:`jetmesh.load.runner.run_load` plays them during a run (:func:`play_faults`).

Example:
    >>> async with play_faults(scenario.faults, fleet) as records:  # doctest: +SKIP
    ...     report = await run_scenario(scenario, door.send)
    >>> [(f.at, f.kind, f.target, f.done) for f in records]  # doctest: +SKIP
    [(2.0, 'kill', 'echo', True)]
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .._exceptions import ConfigError
from .fleet import Fleet
from .report import FaultRecord

__all__ = ["Fault", "KillFault", "PauseFault", "RestartServerFault", "play_faults"]


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0)
    """Seconds from the measured start."""


class KillFault(_Fault):
    """SIGKILL one replica of ``role`` (its oldest live process); with ``restart``, start
    another and wait until it is ready."""

    kind: Literal["kill"]
    role: str = Field(min_length=1)
    restart: bool = False


class RestartServerFault(_Fault):
    """SIGKILL the embedded ``server``, start it again after ``down_s`` (as ``jetmesh up``
    does: its data directory is kept)."""

    kind: Literal["restart-server"]
    server: Literal["nats", "redis"]
    down_s: float = Field(default=1.0, ge=0)


class PauseFault(_Fault):
    """SIGSTOP ``target`` (``nats``, ``redis``, a role or a process ``role#n``) for
    ``seconds``, then SIGCONT."""

    kind: Literal["pause"]
    target: str = Field(min_length=1)
    seconds: float = Field(gt=0)


Fault = Annotated[KillFault | RestartServerFault | PauseFault, Field(discriminator="kind")]
"""One of the faults, told apart by ``kind``."""


def _target(fault: KillFault | RestartServerFault | PauseFault) -> str:
    if isinstance(fault, KillFault):
        return fault.role
    if isinstance(fault, RestartServerFault):
        return fault.server
    return fault.target


async def _strike(fault: KillFault | RestartServerFault | PauseFault, fleet: Fleet) -> str:
    if isinstance(fault, KillFault):
        return await fleet.kill(fault.role, restart=fault.restart)
    if isinstance(fault, RestartServerFault):
        return await fleet.restart_server(fault.server, fault.down_s)
    return await fleet.pause(fault.target, fault.seconds)


@contextlib.asynccontextmanager
async def play_faults(
    faults: list[KillFault | RestartServerFault | PauseFault],
    fleet: Fleet | None,
    *,
    delay_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> AsyncIterator[list[FaultRecord]]:
    """Strike each fault at ``delay_s + at`` seconds from entering the block, in the
    background; yields their records, filled in as each one ends. On leaving, a fault
    still under way is let finish (a pause ends, a server comes back); one not yet due is
    recorded as not done.

    Args:
        faults: The scenario's faults.
        fleet: What the run launched (None: only with no faults).
        delay_s: The warm-up: ``at`` counts from the measured start.
        clock: Seconds, monotonic.

    Raises:
        ConfigError: faults but no fleet.
    """
    if faults and fleet is None:
        raise ConfigError("faults need a launched mesh: add a [mesh] section")
    records: list[FaultRecord] = []
    origin = clock() + delay_s

    async def one(fault: KillFault | RestartServerFault | PauseFault) -> None:
        assert fleet is not None
        await asyncio.sleep(max(0.0, origin + fault.at - clock()))
        at = round(clock() - origin, 3)
        try:
            detail, done = await _strike(fault, fleet), True
        except (ConfigError, OSError) as exc:
            detail, done = str(exc), False
        records.append(
            FaultRecord(at=at, kind=fault.kind, target=_target(fault), done=done, detail=detail)
        )

    tasks = [asyncio.create_task(one(f)) for f in faults]
    try:
        yield records
    finally:
        now = clock() - origin
        for fault, task in zip(faults, tasks, strict=True):
            if fault.at > now and not task.done():
                task.cancel()
                records.append(
                    FaultRecord(
                        at=fault.at,
                        kind=fault.kind,
                        target=_target(fault),
                        done=False,
                        detail="not due before the run ended",
                    )
                )
        await asyncio.gather(*tasks, return_exceptions=True)
        records.sort(key=lambda r: r.at)
