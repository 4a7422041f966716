"""Resident memory of the processes under load, sampled once per timeline window, and the
soak's judgement: did memory and latency stay flat?

A :class:`RssWatch` names the processes to watch (the generator itself, and the mesh's
processes the run knows: ``--watch-pid NAME=PID``, the embedded servers' pid files) and
reads each one's resident set size from ``/proc/<pid>/status`` (``VmRSS``; Linux). On a
system without ``/proc`` nothing is measured and the watch says so (``measured`` is
False); a test may inject its own reader.

:func:`sample_every` calls a watch once per window (in the window's middle) while a run
goes on; the driver fills each :class:`~jetmesh.load.report.Window`'s ``rss_mb`` with it.
:func:`soak_slos` compares the last third of the windows with the first third: each
process's resident memory (``rss growth <NAME>``, limit :data:`RSS_GROWTH_PCT`) and the
p99 latency (``p99 drift``, limit :data:`P99_DRIFT_PCT`), both in percent.

Example:
    >>> watch = RssWatch({"generator": os.getpid(), **embedded_pids(state_dir)})  # doctest: +SKIP
    >>> watch.sample()                                                             # doctest: +SKIP
    {'generator': 61.2, 'nats': 24.8, 'redis': 9.1}
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from .._exceptions import ConfigError
from .report import LoadReport, SloResult, Window

__all__ = [
    "P99_DRIFT_PCT",
    "RSS_GROWTH_PCT",
    "RssReader",
    "RssWatch",
    "embedded_pids",
    "is_soak_slo",
    "proc_rss_mb",
    "sample_every",
    "soak_slos",
    "watch_pids",
    "with_soak",
]

RSS_GROWTH_PCT = 20.0
"""A soak fails when a process's mean resident memory in the last third of the run is more
than 20% above its mean in the first third."""

P99_DRIFT_PCT = 50.0
"""A soak fails when the median of the windows' p99 latency in the last third is more than
50% above the first third's (a first third below :data:`P99_FLOOR_MS` counts as that)."""

P99_FLOOR_MS = 1.0
"""The p99 the drift is measured against at least: below a millisecond, timer noise."""

RssReader = Callable[[int], float | None]
"""Reads one process's resident memory in MiB; None when the process is gone."""

_PROC = Path("/proc")


def proc_rss_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MiB, from ``/proc/<pid>/status``
    (``VmRSS``, Linux); None when the process is gone or the line is missing."""
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            try:
                return int(parts[1]) / 1024  # kB
            except (IndexError, ValueError):
                return None
    return None


def _default_reader() -> RssReader | None:
    return proc_rss_mb if (_PROC / "self" / "status").exists() else None


class RssWatch:
    """The named processes whose resident memory a run samples.

    Args:
        pids: Process name -> pid (``generator``, ``nats``, ``redis``, an agent's name).
        reader: Reads one pid's RSS in MiB; default :func:`proc_rss_mb` where ``/proc``
            exists (Linux), else nothing is measured.
    """

    def __init__(self, pids: Mapping[str, int], reader: RssReader | None = None) -> None:
        self._pids = dict(pids)
        self._sources: list[Callable[[], Mapping[str, int]]] = []
        self._reader = reader if reader is not None else _default_reader()

    @property
    def pids(self) -> dict[str, int]:
        """The processes watched now: those named, and those the followed sources say."""
        out = dict(self._pids)
        for source in self._sources:
            out.update(source())
        return out

    def follow(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Also watch the processes ``source`` names, read again at each sample (a
        launched mesh whose processes a fault restarts: ``Fleet.pids``)."""
        self._sources.append(source)

    @property
    def measured(self) -> bool:
        """Whether this system lets the watch read resident memory."""
        return self._reader is not None

    def describe(self) -> str:
        """What is watched, in a few words, or why nothing is."""
        if self._reader is None:
            return "memory: not measured (no /proc on this system)"
        names = ", ".join(f"{name} (pid {pid})" for name, pid in self.pids.items())
        return f"memory: {names or 'no process named'}"

    def sample(self) -> dict[str, float]:
        """Each watched process's RSS in MiB, rounded to 0.1; a process gone is left out
        (and everything when nothing can be measured)."""
        if self._reader is None:
            return {}
        out: dict[str, float] = {}
        for name, pid in sorted(self.pids.items()):
            mb = self._reader(pid)
            if mb is not None:
                out[name] = round(mb, 1)
        return out


def watch_pids(options: Iterable[str]) -> dict[str, int]:
    """``NAME=PID`` options (``--watch-pid``) as a mapping.

    Raises:
        ConfigError: an option is not ``NAME=PID`` with a positive pid.
    """
    out: dict[str, int] = {}
    for option in options:
        name, sep, pid = option.partition("=")
        if not sep or not name.strip() or not pid.strip().isdigit() or int(pid) <= 0:
            raise ConfigError(f"--watch-pid wants NAME=PID, got {option!r}")
        out[name.strip()] = int(pid)
    return out


def embedded_pids(state_dir: Path) -> dict[str, int]:
    """The embedded servers started by ``jetmesh up`` (their ``<state_dir>/<name>.pid``
    files: ``nats``, ``redis``, ...) whose pid file is readable; empty when none."""
    out: dict[str, int] = {}
    for path in sorted(state_dir.glob("*.pid")):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            out[path.stem] = int(text)
    return out


async def sample_every(
    read: Callable[[], dict[str, float]],
    record: Callable[[float, dict[str, float]], None],
    *,
    start: float,
    window_s: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    """Sample ``read`` in the middle of each window from ``start`` and hand it to
    ``record(t, rss)``, ``t`` the window's start in seconds since ``start``; until
    cancelled.

    Args:
        read: One sample (:meth:`RssWatch.sample`).
        record: Where each sample goes.
        start: The first window's start, on ``clock``.
        window_s: The window's length in seconds (the driver's timeline: 1).
        clock: Seconds, monotonic.
    """
    index = max(0, int((clock() - start) // window_s))
    while True:
        await asyncio.sleep(max(0.0, start + (index + 0.5) * window_s - clock()))
        record(index * window_s, read())
        index += 1


def _thirds(windows: Sequence[Window]) -> tuple[Sequence[Window], Sequence[Window]]:
    third = len(windows) // 3
    return windows[:third], windows[len(windows) - third :]


def _growth_pct(first: float, last: float) -> float:
    return (last - first) / first * 100 if first > 0 else 0.0


def is_soak_slo(name: str) -> bool:
    """Whether objective ``name`` is one of :func:`soak_slos`'."""
    return name == "p99 drift" or name.startswith("rss growth ")


def with_soak(report: LoadReport) -> LoadReport:
    """``report`` judged as a soak: its soak objectives (if any) replaced by
    :func:`soak_slos` of its timeline, with the default limits, and the verdict again."""
    slos = [s for s in report.slos if not is_soak_slo(s.name)] + soak_slos(report.timeline)
    verdict: Literal["pass", "fail"] = "pass" if all(s.ok for s in slos) else "fail"
    return msgspec.structs.replace(report, slos=slos, verdict=verdict)


def soak_slos(
    timeline: Sequence[Window],
    *,
    rss_growth_pct: float = RSS_GROWTH_PCT,
    p99_drift_pct: float = P99_DRIFT_PCT,
) -> list[SloResult]:
    """Judge a soak: the last third of ``timeline`` against its first third (the timeline
    is the measured part, after the warm-up).

    - ``rss growth <NAME>``: the growth, in percent, of each process's mean RSS;
    - ``p99 drift``: the growth, in percent, of the median of the windows' p99 latency
      (windows that completed something; the first third's at least :data:`P99_FLOOR_MS`).

    Args:
        timeline: The run's windows, ``rss_mb`` filled.
        rss_growth_pct: The largest growth of a process's memory that passes.
        p99_drift_pct: The largest drift of the p99 latency that passes.

    Returns:
        One result per process with memory in both thirds, then ``p99 drift``; none when
        the timeline has fewer than three windows.
    """
    first, last = _thirds(timeline)
    if not first:
        return []
    out: list[SloResult] = []
    names = sorted({n for w in timeline for n in w.rss_mb})
    for name in names:
        a = [w.rss_mb[name] for w in first if name in w.rss_mb]
        b = [w.rss_mb[name] for w in last if name in w.rss_mb]
        if a and b:
            growth = round(_growth_pct(statistics.fmean(a), statistics.fmean(b)), 2)
            out.append(
                SloResult(
                    name=f"rss growth {name}",
                    limit=rss_growth_pct,
                    value=growth,
                    ok=growth <= rss_growth_pct,
                )
            )
    a99 = [w.p99_ms for w in first if w.completed]
    b99 = [w.p99_ms for w in last if w.completed]
    drift = 0.0
    if a99 and b99:
        base = max(P99_FLOOR_MS, statistics.median(a99))
        drift = round(_growth_pct(base, statistics.median(b99)), 2)
    out.append(
        SloResult(name="p99 drift", limit=p99_drift_pct, value=drift, ok=drift <= p99_drift_pct)
    )
    return out
