"""Arrival models: when each request of an open loop is due, computed before the run.

An open loop sends on a schedule fixed in advance, whatever the target does; a request's
latency runs from its scheduled time, so a target that stalls shows the stall in every
request that was due during it (what a closed loop, which waits, hides).

Example:
    >>> schedule(ConstantArrival(model="constant", rate=4), 1.0)
    [0.0, 0.25, 0.5, 0.75]
"""

from __future__ import annotations

import random

from .scenario import (
    Arrival,
    ClosedArrival,
    ConstantArrival,
    PoissonArrival,
    RampArrival,
    StepsArrival,
)

__all__ = ["mean_rate", "schedule"]


def schedule(arrival: Arrival, seconds: float) -> list[float]:
    """The send times, in seconds from the start, of every request due before ``seconds``.

    Args:
        arrival: The model (not ``closed``: a closed loop has no schedule).
        seconds: How long the schedule runs (warm-up included).

    Raises:
        ValueError: ``arrival`` is a closed loop.
    """
    if isinstance(arrival, ConstantArrival):
        gap = 1.0 / arrival.rate
        return [i * gap for i in range(int(seconds * arrival.rate - 1e-9) + 1) if i * gap < seconds]
    if isinstance(arrival, PoissonArrival):
        rng = random.Random(arrival.seed)
        times, t = [], rng.expovariate(arrival.rate)
        while t < seconds:
            times.append(t)
            t += rng.expovariate(arrival.rate)
        return times
    if isinstance(arrival, RampArrival):
        over = arrival.over_s or seconds
        span = arrival.to_rate - arrival.from_rate
        times, t = [], 0.0
        while t < seconds:
            times.append(t)
            t += 1.0 / (arrival.from_rate + span * min(t / over, 1.0))
        return times
    if isinstance(arrival, StepsArrival):
        return _steps(arrival, seconds)
    raise ValueError("a closed loop has no schedule")


def _steps(arrival: StepsArrival, seconds: float) -> list[float]:
    times: list[float] = []
    start = 0.0
    steps = list(arrival.steps)
    for i, (rate, length) in enumerate(steps):
        end = seconds if i == len(steps) - 1 else min(start + length, seconds)
        t = start
        while t < end:
            times.append(t)
            t += 1.0 / rate
        start = end
        if start >= seconds:
            break
    return times


def mean_rate(arrival: Arrival, seconds: float) -> float | None:
    """The mean rate the model asks for over ``seconds``, per second (None: closed loop)."""
    if isinstance(arrival, ClosedArrival):
        return None
    return len(schedule(arrival, seconds)) / seconds if seconds > 0 else 0.0
