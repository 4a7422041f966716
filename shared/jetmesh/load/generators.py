"""Several generator processes for one run, when one process cannot keep the rate.

One Python process sends a few thousand requests a second at most; past that its event
loop falls behind the schedule and the report says ``saturated``. ``jetmesh load run
SCENARIO --processes N`` then starts N generator processes (``python -m jetmesh.cli load
run ... --part I/N``), each sending its share of the scenario (:func:`part_of`: the rate
divided by N, its own Poisson seed, a constant schedule shifted by its place so the
processes interleave) and writing its report to a temporary folder; the reports are then
merged (:func:`~jetmesh.load.compare.merge_reports`: histograms added, counts summed) into
one with ``generators = N``, saturated if any process was.

``--processes auto`` runs one process and, when it was saturated, says how many to use
(:func:`suggested_processes`); it does not run again by itself.

Example:
    >>> runs = await run_generators(["single-hop.toml", "--seconds", "60"], 4)  # doctest: +SKIP
    >>> merge_generators(runs).generators                                      # doctest: +SKIP
    4
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from .._exceptions import ConfigError
from ..embedded.scratch import scratch_dir
from .compare import merge_reports
from .report import LoadReport, read_report
from .scenario import (
    ClosedArrival,
    ConstantArrival,
    PoissonArrival,
    RampArrival,
    Scenario,
    StepsArrival,
)

__all__ = [
    "GeneratorRun",
    "merge_generators",
    "parse_part",
    "parse_processes",
    "part_of",
    "run_generators",
    "suggested_processes",
]


@dataclass(frozen=True)
class GeneratorRun:
    """How one generator process ended."""

    index: int
    """Its place, 0 to N-1."""
    exit_code: int
    """Its exit code (1 also when its own objectives failed: the merge judges again)."""
    report: LoadReport | None
    """Its report, or None when it wrote none."""
    stderr: str
    """What it printed on stderr (its errors)."""


def parse_processes(text: str) -> int | None:
    """``--processes``: a count of at least 1, or ``auto`` (None).

    Raises:
        ConfigError: neither.
    """
    if text.strip().lower() == "auto":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise ConfigError(f"--processes wants a count of at least 1 or 'auto', got {text!r}")
    return int(text)


def parse_part(text: str) -> tuple[int, int]:
    """``--part I/N`` (the internal flag of a generator process): (I, N), 0 <= I < N.

    Raises:
        ConfigError: not ``I/N`` with 0 <= I < N.
    """
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ConfigError(f"--part wants I/N with 0 <= I < N, got {text!r}")
    return int(index), int(count)


def part_of(scenario: Scenario, index: int, processes: int) -> tuple[Scenario, float]:
    """Generator process ``index``'s share of ``scenario`` among ``processes``, and how long
    it waits before it starts (its place in a constant schedule).

    - ``constant``, ``poisson``, ``ramp``, ``steps``: every rate divided by ``processes``;
      a Poisson process gets the seed ``seed + index``; a constant schedule starts
      ``index`` gaps (of the whole rate) late, so the processes interleave.
    - ``closed``: the concurrency split (the first ones get one more when it does not
      divide); ``expected_interval_ms`` times ``processes``.

    Raises:
        ConfigError: a closed loop with fewer requests in flight than processes.
    """
    a = scenario.arrival
    n = processes
    delay = 0.0
    if isinstance(a, ConstantArrival):
        arrival: object = a.model_copy(update={"rate": a.rate / n})
        delay = index / a.rate
    elif isinstance(a, PoissonArrival):
        arrival = a.model_copy(update={"rate": a.rate / n, "seed": a.seed + index})
    elif isinstance(a, RampArrival):
        arrival = a.model_copy(update={"from_rate": a.from_rate / n, "to_rate": a.to_rate / n})
    elif isinstance(a, StepsArrival):
        arrival = a.model_copy(update={"steps": [(rate / n, s) for rate, s in a.steps]})
    else:
        arrival = _closed_part(scenario, a, index, n)
    return scenario.model_copy(update={"arrival": arrival}), delay


def _closed_part(scenario: Scenario, a: ClosedArrival, index: int, n: int) -> ClosedArrival:
    if a.concurrency < n:
        raise ConfigError(
            f"scenario {scenario.name}: {n} processes need a concurrency of at least {n}"
        )
    concurrency = a.concurrency // n + (1 if index < a.concurrency % n else 0)
    interval = a.expected_interval_ms * n if a.expected_interval_ms else None
    return a.model_copy(update={"concurrency": concurrency, "expected_interval_ms": interval})


def suggested_processes(report: LoadReport) -> int:
    """How many generator processes a saturated run should use: the share of the asked
    rate it did not reach, plus half again for headroom; at least 2 (1 when not saturated)."""
    if not report.saturated:
        return 1
    if report.asked_rate and report.achieved_rate > 0:
        return max(2, math.ceil(1.5 * report.asked_rate / report.achieved_rate))
    return 2


async def run_generators(
    args: Sequence[str], processes: int, *, timeout_s: float | None = None
) -> list[GeneratorRun]:
    """Start ``processes`` generator processes, ``jetmesh load run ARGS --part I/N``, each
    quiet and writing its report to a temporary folder; wait for all and read the reports.

    Args:
        args: The scenario file and the run's options (not ``--out``, ``--processes``).
        processes: How many.
        timeout_s: Kill the processes still running after this long (default: no limit).

    Returns:
        One :class:`GeneratorRun` per process, in order.
    """
    with scratch_dir("jetmesh-load-") as tmp:
        outs = [tmp / str(i) for i in range(processes)]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "jetmesh.cli",
                "load",
                "run",
                *args,
                "--out",
                str(out),
                "--quiet",
                "--part",
                f"{i}/{processes}",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=os.environ.copy(),
            )
            for i, out in enumerate(outs)
        ]
        try:
            async with asyncio.timeout(timeout_s):
                errs = await asyncio.gather(*(p.communicate() for p in procs))
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
        runs = []
        for i, (proc, out, (_, err)) in enumerate(zip(procs, outs, errs, strict=True)):
            path = out / "report.json"
            report = read_report(path) if path.exists() else None
            code = proc.returncode if proc.returncode is not None else -1
            runs.append(GeneratorRun(i, code, report, err.decode(errors="replace")))
        return runs


def merge_generators(runs: Sequence[GeneratorRun]) -> LoadReport:
    """The generator processes' reports as one, ``generators`` their count.

    Raises:
        ValueError: a process wrote no report (its stderr says why).
    """
    missing = [r for r in runs if r.report is None]
    if missing or not runs:
        said = "; ".join(
            f"process {r.index}: exit {r.exit_code}: {r.stderr.strip()}" for r in missing
        )
        raise ValueError(f"a generator process wrote no report ({said or 'none ran'})")
    reports = [r.report for r in runs if r.report is not None]
    return msgspec.structs.replace(merge_reports(reports), generators=len(reports))
