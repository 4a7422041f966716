"""Latency recording and result tables for the load tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped, unused-ignore]

_LOWEST_US = 1
_HIGHEST_US = 60_000_000
_SIGNIFICANT_DIGITS = 3

_HEADERS = ("name", "requests", "errors", "seconds", "req/s", "p50 ms", "p99 ms", "p99.9 ms")


class LatencyRecorder:
    """Latency histogram with microsecond resolution, from 1 us to 60 s, 3 digits.

    Values outside the range are clamped to it, so a recording never raises.
    """

    def __init__(self) -> None:
        """Creates an empty recorder."""
        self._hist = HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGNIFICANT_DIGITS)

    def record_ns(self, nanoseconds: int) -> None:
        """Records one latency given in nanoseconds (e.g. a ``perf_counter_ns`` delta).

        Args:
            nanoseconds: The latency; rounded to the nearest microsecond.
        """
        micros = (nanoseconds + 500) // 1000
        self._hist.record_value(min(max(micros, _LOWEST_US), _HIGHEST_US))

    @property
    def count(self) -> int:
        """The number of latencies recorded."""
        return int(self._hist.get_total_count())

    def percentile_ms(self, percentile: float) -> float:
        """Returns the latency at a percentile, in milliseconds.

        Args:
            percentile: From 0 to 100, e.g. 99.9.

        Returns:
            The latency in milliseconds, or 0.0 if nothing was recorded.
        """
        if self.count == 0:
            return 0.0
        return float(self._hist.get_value_at_percentile(percentile)) / 1000.0


@dataclass(frozen=True)
class RunResult:
    """The outcome of one benchmark run.

    Attributes:
        name: What was measured, e.g. "floor".
        requests: Measured requests completed, successes plus errors.
        errors: Measured requests that raised.
        seconds: Wall time of the measured phase.
        throughput: Successful requests per second.
        p50_ms: Median latency of successful requests, in milliseconds.
        p99_ms: 99th percentile latency, in milliseconds.
        p999_ms: 99.9th percentile latency, in milliseconds.
    """

    name: str
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    p999_ms: float

    def row(self) -> tuple[str, ...]:
        """Returns the result as table cells, in the order of the table headers."""
        return (
            self.name,
            str(self.requests),
            str(self.errors),
            f"{self.seconds:.2f}",
            f"{self.throughput:,.0f}",
            f"{self.p50_ms:.3f}",
            f"{self.p99_ms:.3f}",
            f"{self.p999_ms:.3f}",
        )


def ratio(a: RunResult, b: RunResult) -> float:
    """Returns ``a.throughput / b.throughput`` (0.0 if ``b`` had no throughput)."""
    return a.throughput / b.throughput if b.throughput > 0 else 0.0


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the first a header) as lines of aligned columns: the first column to the
    left, the others to the right, a line of dashes under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def format_table(
    results: Sequence[RunResult], *, ratio_of: tuple[RunResult, RunResult] | None = None
) -> str:
    """Formats results as an aligned text table, optionally with a ratio line.

    Args:
        results: One row per result, in order.
        ratio_of: ``(a, b)`` to append ``ratio = throughput_a / throughput_b``.

    Returns:
        The table, lines joined by newlines, without a trailing newline.
    """
    lines = aligned([_HEADERS, *(r.row() for r in results)])
    if ratio_of is not None:
        a, b = ratio_of
        lines.append(f"ratio = {a.name} / {b.name} throughput = {ratio(a, b):.3f}")
    return "\n".join(lines)
