"""Faults on a schedule during a load run: kill a role's replica, restart a server, pause
a process or a server; and the run that launches the mesh, strikes it and counts what the
faults cost (sent, completed, lost, duplicated, dead-lettered).

A scenario's ``[[faults]]`` (each one a :data:`Fault`) strike at ``at`` seconds from the
measured start, through the :class:`~jetmesh.load.fleet.Fleet` the run launched (so a
scenario with faults needs a ``[mesh]``; a server fault, ``embedded = true``)::

    [[faults]]
    at = 2
    kind = "kill"             # SIGKILL one replica of the role (its oldest)
    role = "echo"
    restart = true            # and start another

    [[faults]]
    at = 3
    kind = "kill"             # the same, again and again: 12 strikes in all,
    role = "echo"
    times = 12
    every_s = [2, 5]          # each 2 to 5 s after the last (or a fixed every_s = 4),
    seed = 7                  # drawn from this seed: the same schedule every run
    replica = "random"        # each strike a replica drawn from the seed (default "oldest")
    restart = true

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

Each strike becomes a :class:`~jetmesh.load.report.FaultRecord` in the report (a repeated
kill, one per strike; :meth:`KillFault.schedule` says when each one is due);
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
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._exceptions import ConfigError
from .fleet import Fleet
from .report import FaultRecord

__all__ = ["Fault", "KillFault", "PauseFault", "RestartServerFault", "play_faults"]


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0)
    """Seconds from the measured start."""


MAX_STRIKES = 10_000
"""The most strikes one repeated fault may have."""

Gap = Annotated[float, Field(gt=0)]


class KillFault(_Fault):
    """SIGKILL one replica of ``role`` (its oldest live process, or with ``replica =
    "random"`` one drawn from ``seed``); with ``restart``, start another and wait until it
    is ready. With ``times``, strike again and again: each strike ``every_s`` after the
    one before (a number, or ``[low, high]``: a gap drawn uniformly from ``seed``), the
    next one not before the last one (and its restart) ended."""

    kind: Literal["kill"]
    role: str = Field(min_length=1)
    restart: bool = False
    times: int = Field(default=1, ge=1, le=MAX_STRIKES)
    """How many strikes, the first at ``at``."""
    every_s: Gap | tuple[Gap, Gap] | None = None
    """Seconds between strikes, or ``[low, high]`` for a random gap; needed with ``times``."""
    seed: int = 1
    """Seeds the random gaps and replicas: a seed gives the same schedule every run."""
    replica: Literal["oldest", "random"] = "oldest"
    """Which live replica of ``role`` each strike kills."""

    @model_validator(mode="after")
    def _repeat_needs_a_gap(self) -> KillFault:
        if self.times > 1 and self.every_s is None:
            raise ValueError("a repeated kill (times > 1) needs every_s")
        if self.times == 1 and self.every_s is not None:
            raise ValueError("every_s needs times > 1")
        if isinstance(self.every_s, tuple) and self.every_s[0] > self.every_s[1]:
            raise ValueError("every_s = [low, high] needs low <= high")
        return self

    def schedule(self) -> list[float]:
        """When each strike is due, in seconds from the measured start: ``at``, then each
        one a gap later (the same list for the same fields).

        Returns:
            ``times`` ascending times, the first ``at``.
        """
        rng, gap = random.Random(self.seed), self.every_s
        due = [self.at]
        for _ in range(self.times - 1):
            step = rng.uniform(*gap) if isinstance(gap, tuple) else float(gap or 0.0)
            due.append(round(due[-1] + step, 3))
        return due


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


async def _strike(
    fault: KillFault | RestartServerFault | PauseFault, fleet: Fleet, pick: random.Random
) -> str:
    if isinstance(fault, KillFault):
        drawn = pick if fault.replica == "random" else None
        return await fleet.kill(fault.role, restart=fault.restart, pick=drawn)
    if isinstance(fault, RestartServerFault):
        return await fleet.restart_server(fault.server, fault.down_s)
    return await fleet.pause(fault.target, fault.seconds)


def _due(fault: KillFault | RestartServerFault | PauseFault) -> list[float]:
    """When each strike of ``fault`` is due (one, but for a repeated kill)."""
    return fault.schedule() if isinstance(fault, KillFault) else [fault.at]


@contextlib.asynccontextmanager
async def play_faults(
    faults: list[KillFault | RestartServerFault | PauseFault],
    fleet: Fleet | None,
    *,
    delay_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> AsyncIterator[list[FaultRecord]]:
    """Strike each fault at ``delay_s + at`` seconds from entering the block (a repeated
    kill at each time of its schedule, one strike after the other), in the background;
    yields their records, one per strike, filled in as each one ends. On leaving, a strike
    under way is let finish (a pause ends, a server comes back) and one due before the
    end still strikes; one not yet due is recorded as not done.

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
    ending = asyncio.Event()
    ended_at: list[float] = []
    """When the block was left (seconds from the measured start), once it was."""

    def record(
        fault: KillFault | RestartServerFault | PauseFault, at: float, done: bool, detail: str
    ) -> None:
        records.append(
            FaultRecord(at=at, kind=fault.kind, target=_target(fault), done=done, detail=detail)
        )

    async def one(fault: KillFault | RestartServerFault | PauseFault) -> None:
        assert fleet is not None
        due = _due(fault)
        pick = random.Random(f"replicas {getattr(fault, 'seed', 0)}")
        for n, at in enumerate(due, start=1):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ending.wait(), max(0.0, origin + at - clock()))
            if ended_at and at > ended_at[0]:
                for later in due[n - 1 :]:
                    record(fault, later, False, "not due before the run ended")
                return
            struck = round(clock() - origin, 3)
            try:
                detail, done = await _strike(fault, fleet, pick), True
            except (ConfigError, OSError) as exc:
                detail, done = str(exc), False
            record(
                fault, struck, done, f"strike {n}/{len(due)}: {detail}" if len(due) > 1 else detail
            )

    tasks = [asyncio.create_task(one(f)) for f in faults]
    try:
        yield records
    finally:
        ended_at.append(clock() - origin)
        ending.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        records.sort(key=lambda r: r.at)
