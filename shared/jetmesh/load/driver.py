"""The load driver: sends a scenario's requests through a door and tallies what comes back
into a :class:`~jetmesh.load.report.LoadReport`.

Open loop (``constant``, ``poisson``, ``ramp``, ``steps``): every send time is scheduled
before the run (:mod:`.arrivals`); the sender never waits for replies, and each request's
latency runs from its SCHEDULED time to its answer. So a target that stalls shows the stall
in every request that was due during it. Two waits count in that latency on purpose:

- ``max_in_flight``: at the cap, a request queues for a slot, and its wait counts;
- the generator's own lag: when this process cannot send on time (its event loop busy),
  requests go out late and the lateness counts. The lag is measured; when its p99 passes
  :func:`lag_bound` the report says ``saturated``: the numbers then describe the load
  generator as much as the target.

Closed loop (``closed``): ``concurrency`` requests in flight, the next sent when one
returns; latency from the actual send. With ``expected_interval_ms`` the histogram gets
HdrHistogram's coordinated-omission correction (``record_corrected_value``): the samples a
stalled loop did not send are added back.

A request with no answer within ``timeout_s`` is lost. Counts cover the measured part only
(after ``warmup_s``). The latency histogram is HdrHistogram's (the ``load`` extra).

Example:
    >>> report = await run_scenario(scenario, send)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import CallFailed, ConfigError
from .arrivals import mean_rate, schedule
from .memory import sample_every
from .report import LoadReport, SloResult, Window
from .scenario import ClosedArrival, Scenario, Slo

__all__ = [
    "LAG_BOUND_S",
    "Progress",
    "Send",
    "lag_bound",
    "new_histogram",
    "run_scenario",
    "slo_results",
]

Send = Callable[[bytes], Awaitable[None]]
"""Sends one request body and returns when it is answered. Raises ``TimeoutError`` when no
answer came (lost), any other exception for an error answer."""

LAG_BOUND_S = 0.050
"""The generator counts as saturated when its lag's p99 passes this, or 10% of the mean gap
between sends if that is larger."""

_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 3_600_000_000, 3


@dataclass(frozen=True)
class Progress:
    """A live snapshot, once a second, for a progress line."""

    t: float
    """Seconds since the measured part began (negative during the warm-up)."""
    sent: int
    completed: int
    errors: int
    lost: int
    p99_ms: float
    """The p99 latency so far (measured part)."""
    rate: float
    """Requests sent in the last second."""


def lag_bound(rate: float | None) -> float:
    """The generator lag (p99, seconds) beyond which a run at ``rate`` is saturated."""
    gap = 1.0 / rate if rate else 0.0
    return max(LAG_BOUND_S, 0.1 * gap)


def new_histogram() -> Any:
    """An empty latency HdrHistogram in microseconds (1 us to 1 h, 3 digits).

    Raises:
        ConfigError: hdrhistogram is not installed (``pip install 'jetmesh[load]'``).
    """
    try:
        from hdrh.histogram import HdrHistogram  # the `load` extra: imported when needed
    except ImportError:
        raise ConfigError("jetmesh load needs hdrhistogram: pip install 'jetmesh[load]'") from None
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


@dataclass
class _Bucket:
    sent: int = 0
    completed: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    """The window's latencies while it is open; once it is over, its quantiles instead."""
    quantiles_ms: tuple[float, float] | None = None
    """p50 and p99, once the window is over."""
    rss_mb: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        """The window is over: keep its p50 and p99, not every latency."""
        if self.quantiles_ms is None:
            latencies = self.latencies_ms
            self.quantiles_ms = (_quantile(latencies, 0.50), _quantile(latencies, 0.99))
            self.latencies_ms = []


class _Tally:
    """What the measured part sent and got back, by one-second window. What it keeps does
    not grow with the run: a histogram, and each window's counts and, once the window is
    over, its two quantiles (answers end in the order of the clock, so a window is over once
    an answer ends in a later one)."""

    def __init__(self, seconds: float, expected_interval_us: int | None = None) -> None:
        self.histogram = new_histogram()
        self.expected_interval_us = expected_interval_us
        self.windows = [_Bucket() for _ in range(max(1, math.ceil(seconds)))]
        self.sent = self.completed = self.errors = self.lost = self.dead_lettered = 0
        self.last_second_sent = 0
        self._open = 0
        """Windows before this one are over."""

    def _index(self, t: float) -> int:
        return min(max(int(t), 0), len(self.windows) - 1)

    def _bucket(self, t: float) -> _Bucket:
        return self.windows[self._index(t)]

    def on_sent(self, t: float) -> None:
        self.sent += 1
        self.last_second_sent += 1
        self._bucket(t).sent += 1

    def on_done(self, t_done: float, latency_s: float, failure: BaseException | None) -> None:
        index = self._index(t_done)
        bucket = self.windows[index]
        while self._open < index:
            self.windows[self._open].close()
            self._open += 1
        if isinstance(failure, TimeoutError):
            self.lost += 1
            return
        if failure is not None:
            self.errors += 1
            bucket.errors += 1
            if _dead_lettered(failure):
                self.dead_lettered += 1
            return
        self.completed += 1
        bucket.completed += 1
        if bucket.quantiles_ms is None:
            bucket.latencies_ms.append(latency_s * 1000)
        value = _us(latency_s)
        if self.expected_interval_us:
            self.histogram.record_corrected_value(value, self.expected_interval_us)
        else:
            self.histogram.record_value(value)

    def on_rss(self, t: float, rss_mb: dict[str, float]) -> None:
        if 0 <= t < len(self.windows):
            self._bucket(t).rss_mb = rss_mb

    def p99_ms(self) -> float:
        return float(self.histogram.get_value_at_percentile(99.0)) / 1000

    def timeline(self) -> list[Window]:
        """The windows, every one of them over (call it once the run has ended)."""
        out = []
        for i, b in enumerate(self.windows):
            b.close()
            assert b.quantiles_ms is not None
            p50, p99 = b.quantiles_ms
            out.append(
                Window(
                    t=float(i),
                    sent=b.sent,
                    completed=b.completed,
                    errors=b.errors,
                    p50_ms=p50,
                    p99_ms=p99,
                    rss_mb=b.rss_mb,
                )
            )
        return out

    def latency_ms(self) -> dict[str, float]:
        h = self.histogram
        if not h.get_total_count():
            return {k: 0.0 for k in ("p50", "p90", "p99", "p99.9", "max", "mean")}
        at = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
        out = {k: float(h.get_value_at_percentile(p)) / 1000 for k, p in at.items()}
        out["max"] = float(h.get_max_value()) / 1000
        out["mean"] = float(h.get_mean_value()) / 1000
        return out


def _us(seconds: float) -> int:
    """``seconds`` as a histogram's value: microseconds, within its range."""
    return max(_LOWEST_US, min(round(seconds * 1e6), _HIGHEST_US))


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _dead_lettered(failure: BaseException) -> bool:
    """An error whose reason says the task went to the dead-letter stream."""
    said = str(failure).lower()
    if isinstance(failure, CallFailed):
        said += " " + failure.reason.lower()
    return any(w in said for w in ("dead-letter", "dead letter", "dlq", "max-deliveries"))


async def _call(send: Send, body: bytes, timeout_s: float) -> BaseException | None:
    try:
        async with asyncio.timeout(timeout_s):
            await send(body)
    except TimeoutError as exc:
        return exc
    except Exception as exc:
        return exc
    return None


async def _open_loop(
    scenario: Scenario,
    send: Send,
    bodies: Iterator[bytes],
    tally: _Tally,
    clock: Callable[[], float],
    origin: float,
) -> Any:
    """Send on schedule; returns the histogram of the generator's lag behind it (each
    measured send's, in microseconds)."""
    warmup = scenario.warmup_s
    times = schedule(scenario.arrival, warmup + scenario.seconds)
    slots = asyncio.Semaphore(scenario.max_in_flight)
    lags = new_histogram()
    tasks: set[asyncio.Task[None]] = set()

    async def one(body: bytes, due: float, measured: bool) -> None:
        failure: BaseException | None
        try:
            async with asyncio.timeout(scenario.timeout_s), slots:  # the cap's wait counts
                failure = await _call(send, body, math.inf)
        except TimeoutError as exc:
            failure = exc
        done = clock()
        if measured:
            tally.on_done(done - origin - warmup, done - due, failure)

    for offset in times:
        due = origin + offset
        # behind schedule: still yield, so that replies and earlier sends get the loop
        await asyncio.sleep(max(0.0, due - clock()))
        measured = offset >= warmup
        if measured:
            lags.record_value(_us(clock() - due))
            tally.on_sent(offset - warmup)
        task = asyncio.create_task(one(next(bodies), due, measured))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return lags


async def _closed_loop(
    scenario: Scenario,
    arrival: ClosedArrival,
    send: Send,
    bodies: Iterator[bytes],
    tally: _Tally,
    clock: Callable[[], float],
    origin: float,
) -> None:
    warmup = scenario.warmup_s
    end = origin + warmup + scenario.seconds

    async def worker() -> None:
        while (start := clock()) < end:
            measured = start - origin >= warmup
            if measured:
                tally.on_sent(start - origin - warmup)
            failure = await _call(send, next(bodies), scenario.timeout_s)
            done = clock()
            if measured:
                tally.on_done(done - origin - warmup, done - start, failure)

    await asyncio.gather(*(worker() for _ in range(arrival.concurrency)))


def slo_results(
    slo: Slo, latency_ms: dict[str, float], sent: int, failed: int, lost: int
) -> list[SloResult]:
    """Each objective ``slo`` sets, checked against the run's numbers.

    Args:
        slo: The scenario's objectives.
        latency_ms: The run's latencies (``p50``, ``p99``, ...).
        sent: Requests sent.
        failed: Requests that failed (errors and lost).
        lost: Requests lost.
    """
    out: list[SloResult] = []
    for name, key in (("p99_ms", "p99"), ("p50_ms", "p50")):
        limit = getattr(slo, name)
        if limit is not None:
            out.append(
                SloResult(
                    name=name, limit=limit, value=latency_ms[key], ok=latency_ms[key] <= limit
                )
            )
    if slo.error_rate is not None:
        rate = failed / sent if sent else 0.0
        out.append(
            SloResult(
                name="error_rate", limit=slo.error_rate, value=rate, ok=rate <= slo.error_rate
            )
        )
    if slo.no_loss:
        out.append(SloResult(name="no_loss", limit=0.0, value=float(lost), ok=lost == 0))
    return out


async def _ticker(
    tally: _Tally,
    progress: Callable[[Progress], None],
    clock: Callable[[], float],
    origin: float,
    warmup: float,
) -> None:
    while True:
        await asyncio.sleep(1.0)
        progress(
            Progress(
                t=clock() - origin - warmup,
                sent=tally.sent,
                completed=tally.completed,
                errors=tally.errors,
                lost=tally.lost,
                p99_ms=tally.p99_ms(),
                rate=float(tally.last_second_sent),
            )
        )
        tally.last_second_sent = 0


async def run_scenario(
    scenario: Scenario,
    send: Send,
    *,
    target: str = "",
    duplicates: Callable[[], int] = lambda: 0,
    progress: Callable[[Progress], None] | None = None,
    memory: Callable[[], dict[str, float]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LoadReport:
    """Run ``scenario`` against ``send`` and report it.

    Args:
        scenario: What to send, how often, for how long, and the objectives.
        send: Sends one body and returns once it is answered (see :data:`Send`).
        target: The report's ``target`` (default: the scenario's door and agent).
        duplicates: Reads how many replies came for a request already answered.
        progress: Called once a second with a :class:`Progress` snapshot.
        memory: Read once per window of the measured part, in its middle: the resident
            memory by process name (:meth:`~jetmesh.load.memory.RssWatch.sample`), kept in
            the window's ``rss_mb``.
        clock: Seconds, monotonic (a test may pass its own).

    Returns:
        The report, its verdict ``fail`` when an objective failed.

    Raises:
        ConfigError: the payload's samples cannot be read, or hdrhistogram is missing.
    """
    arrival = scenario.arrival
    expected = None
    if isinstance(arrival, ClosedArrival) and arrival.expected_interval_ms:
        expected = max(1, round(arrival.expected_interval_ms * 1000))
    tally = _Tally(scenario.seconds, expected)
    bodies = scenario.bodies()
    started_at = time.time() + scenario.warmup_s
    origin = clock() + 0.01
    ticker = None
    if progress is not None:
        ticker = asyncio.create_task(_ticker(tally, progress, clock, origin, scenario.warmup_s))
    sampler = None
    if memory is not None:
        start = origin + scenario.warmup_s
        sampler = asyncio.create_task(sample_every(memory, tally.on_rss, start=start, clock=clock))
    try:
        lag_p99_s = 0.0  # a closed loop sends as answers come: it has no schedule to lag
        if isinstance(arrival, ClosedArrival):
            await _closed_loop(scenario, arrival, send, bodies, tally, clock, origin)
        else:
            lags = await _open_loop(scenario, send, bodies, tally, clock, origin)
            if lags.get_total_count():
                lag_p99_s = lags.get_value_at_percentile(99.0) / 1e6
    finally:
        for task in (ticker, sampler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    asked = mean_rate(arrival, scenario.seconds)
    latency = tally.latency_ms()
    slos = slo_results(scenario.slo, latency, tally.sent, tally.errors + tally.lost, tally.lost)
    return LoadReport(
        scenario=scenario.name,
        target=target or scenario.target.describe(scenario.agent),
        started_at=started_at,
        seconds=scenario.seconds,
        warmup_s=scenario.warmup_s,
        arrival=scenario.describe_arrival(),
        asked_rate=asked,
        achieved_rate=tally.sent / scenario.seconds,
        saturated=lag_p99_s > lag_bound(asked),
        lag_p99_ms=lag_p99_s * 1000,
        sent=tally.sent,
        completed=tally.completed,
        errors=tally.errors,
        lost=tally.lost,
        duplicated=duplicates(),
        dead_lettered=tally.dead_lettered,
        latency_ms=latency,
        timeline=tally.timeline(),
        slos=slos,
        verdict="pass" if all(s.ok for s in slos) else "fail",
        histogram=tally.histogram.encode().decode(),
    )
