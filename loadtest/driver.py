"""A closed-loop load driver: a fixed number of requests in flight, bounded in count and time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from loadtest.stats import LatencyRecorder, RunResult

Send = Callable[[bytes], Awaitable[object]]

# After the deadline no new request starts; requests already in flight get this long
# to finish (callers should give ``send`` its own, shorter timeout) before being cancelled.
_DRAIN_SECONDS = 10.0


class _Phase:
    """One phase (warmup or measured) shared by the workers of a single ``drive`` call."""

    def __init__(self, total: int, deadline: float, recorder: LatencyRecorder | None) -> None:
        self.total = total
        self.deadline = deadline
        self.recorder = recorder
        self.started = 0
        self.completed = 0
        self.errors = 0


async def _worker(send: Send, payload: bytes, phase: _Phase) -> None:
    """Sends requests one after another until the phase's count or deadline is reached."""
    recorder = phase.recorder
    while phase.started < phase.total and time.monotonic() < phase.deadline:
        phase.started += 1
        start = time.perf_counter_ns()
        try:
            await send(payload)
        except Exception:
            phase.errors += 1
        else:
            if recorder is not None:
                recorder.record_ns(time.perf_counter_ns() - start)
        phase.completed += 1


async def _run_phase(send: Send, payload: bytes, in_flight: int, phase: _Phase) -> None:
    """Runs ``in_flight`` workers for one phase; cancels stragglers after the drain time."""
    tasks = [asyncio.create_task(_worker(send, payload, phase)) for _ in range(in_flight)]
    try:
        timeout = max(phase.deadline - time.monotonic(), 0.0) + _DRAIN_SECONDS
        _, pending = await asyncio.wait(tasks, timeout=timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    phase.errors += len(pending)


async def drive(
    send: Send,
    *,
    payload: bytes,
    in_flight: int,
    requests: int,
    warmup: int,
    max_seconds: float,
    name: str = "run",
) -> RunResult:
    """Keeps ``in_flight`` requests outstanding and measures their latency and throughput.

    ``in_flight`` worker coroutines each await ``send(payload)`` in a loop. First
    ``warmup`` requests are sent and not recorded; then ``requests`` measured ones. Each
    phase stops at its count or after ``max_seconds``, whichever comes first; requests
    in flight at the deadline may finish (cancelled after a further 10 s drain).

    Args:
        send: Sends one request and returns when the reply arrives; raises on failure.
        payload: The bytes passed to every ``send`` call.
        in_flight: The number of concurrent requests (worker coroutines).
        requests: The number of measured requests.
        warmup: The number of unrecorded requests sent first.
        max_seconds: The time limit of each phase.
        name: The name carried by the result.

    Returns:
        The measured phase's result: successes and errors, wall time, successful
        requests per second and latency percentiles of the successful requests.

    Raises:
        ValueError: If ``in_flight`` is below 1, or ``requests``, ``warmup`` or
            ``max_seconds`` is negative.
    """
    if in_flight < 1 or requests < 0 or warmup < 0 or max_seconds < 0:
        raise ValueError("in_flight must be >= 1; requests, warmup, max_seconds >= 0")
    if warmup:
        await _run_phase(send, payload, in_flight, _Phase(warmup, _deadline(max_seconds), None))

    recorder = LatencyRecorder()
    phase = _Phase(requests, _deadline(max_seconds), recorder)
    start = time.perf_counter()
    await _run_phase(send, payload, in_flight, phase)
    seconds = time.perf_counter() - start

    # Every started request either completed or was cancelled after the drain (an error).
    done = phase.started
    ok = done - phase.errors
    return RunResult(
        name=name,
        requests=done,
        errors=phase.errors,
        seconds=seconds,
        throughput=ok / seconds if seconds > 0 else 0.0,
        p50_ms=recorder.percentile_ms(50.0),
        p99_ms=recorder.percentile_ms(99.0),
        p999_ms=recorder.percentile_ms(99.9),
    )


def _deadline(max_seconds: float) -> float:
    """Returns the ``time.monotonic`` deadline ``max_seconds`` from now."""
    return time.monotonic() + max_seconds
