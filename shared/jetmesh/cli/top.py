"""``jetmesh top``: ``jetmesh agents`` live, with rates.

Every ``--interval`` seconds it asks the NATS service API again (one connection as the
``cli`` ingress, :class:`jetmesh.cli.agents.Surveyor`) and shows the same rows as
``jetmesh agents``, with each role's handled/s and errors/s since the survey before:
the difference of the counts its replicas reported, over the replicas that answered both
times, per second between the two surveys. On a terminal the table refreshes in place
(``rich.live.Live``); otherwise each survey is printed after the one before, so the
output can be read by a script. ``--once`` or ``--iterations N`` stop on their own;
Ctrl-C stops it at any time. The figures are claims of whoever answered, shown as data
(:mod:`jetmesh.runtime.discovery`).

Example:
    >>> async for frame in frames(settings, interval_s=2.0, iterations=2):  # doctest: +SKIP
    ...     console.print(frame.render())
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from ..runtime.discovery import SURVEY_WINDOW_S, Seen
from ..settings import MeshSettings
from .agents import Rates, Surveyor, by_role, table
from .common import console, run_async, settings

DEFAULT_INTERVAL_S = 2.0
"""How often ``jetmesh top`` asks again."""


def rates(before: list[Seen], after: list[Seen], elapsed_s: float) -> dict[str, Rates]:
    """Each role's tasks per second between two surveys ``elapsed_s`` apart: what its
    replicas that answered both times handled (and failed) in between. A replica new in
    ``after`` adds nothing yet; a count that went down (not expected of one replica) adds
    nothing. Roles with no replica in both surveys are left out."""
    if elapsed_s <= 0:
        raise ValueError(f"elapsed_s must be positive, not {elapsed_s}")
    earlier = {(s.name, s.id): c for s in before if (c := s.replica_counts()) is not None}
    handled: dict[str, int] = {}
    failed: dict[str, list[int | None]] = {}
    for item in after:
        now, then = item.replica_counts(), earlier.get((item.name, item.id))
        if now is None or then is None:
            continue
        handled[item.name] = handled.get(item.name, 0) + max(0, now.handled - then.handled)
        errors = None if now.errors is None or then.errors is None else now.errors - then.errors
        failed.setdefault(item.name, []).append(None if errors is None else max(0, errors))
    out = {}
    for role, count in handled.items():
        known = [e for e in failed[role] if e is not None]
        unknown = len(known) < len(failed[role])
        out[role] = Rates(count / elapsed_s, None if unknown else sum(known) / elapsed_s)
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True)
class Frame:
    """One survey as ``jetmesh top`` shows it."""

    seen: list[Seen]
    at: float
    """When the survey ended (``time.time()``)."""
    rates: dict[str, Rates]
    """Empty for the first survey (nothing to compare with)."""
    interval_s: float

    def render(self) -> RenderableType:
        rows = by_role(self.seen)
        replicas = sum(len(r.replicas) for r in rows)
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        title = Text(
            f"jetmesh top  {stamp}  every {self.interval_s:g}s  "
            f"{_count(len(rows), 'role')}, {_count(replicas, 'replica')}",
            style="bold",
        )
        if not rows:
            return Group(title, Text("no agents answered"))
        return Group(title, table(rows, self.rates))


async def frames(
    s: MeshSettings,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    iterations: int | None = None,
    window_s: float = SURVEY_WINDOW_S,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Frame]:
    """Survey the service API every ``interval_s`` (``iterations`` times, until ``stop``
    is set, or until the caller stops iterating), each survey with the rates since the one
    before. A survey under way when ``stop`` is set is finished first.

    Raises:
        ConfigError: nats-server does not let the ``cli`` ask (as ``jetmesh agents``).
    """
    stop = stop or asyncio.Event()
    async with Surveyor(s, "jetmesh top") as surveyor:
        before: tuple[list[Seen], float] | None = None
        done = 0
        while (iterations is None or done < iterations) and not stop.is_set():
            started = time.monotonic()
            seen = await surveyor.ask(window_s)
            ended = time.monotonic()
            found = rates(before[0], seen, ended - before[1]) if before else {}
            yield Frame(seen, time.time(), found, interval_s)
            before = (seen, ended)
            done += 1
            if iterations is None or done < iterations:
                pause = max(0.0, interval_s - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)


async def show(s: MeshSettings, out: Console, *, interval_s: float, iterations: int | None) -> None:
    """Show the frames on ``out``: in place on a terminal, one after another otherwise.
    Ctrl-C (SIGINT) or SIGTERM stops it after the survey under way, so its connection is
    closed in order rather than torn down in the middle of a request."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    live = Live(console=out, auto_refresh=False) if out.is_terminal else None
    with live or contextlib.nullcontext():
        async for frame in frames(s, interval_s=interval_s, iterations=iterations, stop=stop):
            if live is not None:
                live.update(frame.render(), refresh=True)
            else:
                out.print(frame.render())


def top(
    interval: float = typer.Option(DEFAULT_INTERVAL_S, min=0.1, help="seconds between two surveys"),
    iterations: int | None = typer.Option(
        None, min=1, help="stop after this many surveys (default: until Ctrl-C)"
    ),
    once: bool = typer.Option(False, "--once", help="one survey, then stop"),
) -> None:
    """The agents that answer the NATS service API, live: jetmesh agents's rows refreshed
    every --interval seconds, with handled/s and errors/s per role since the survey
    before, tasks in flight and consumer lag. Ctrl-C stops it."""
    count = 1 if once else iterations
    run_async(show(settings(), console, interval_s=interval, iterations=count))
