"""``make bench``: one signed mesh hop against the bare nats-py floor, as ``jetmesh load``
scenarios.

    floor: requester --core request--> responder process --core reply-->
    hop:   caller --signed task, JetStream publish+ack--> MESH_TASKS --pull--> echo agent
           process (verify, handle, events) --signed reply--> caller (verify)

Each row is a scenario of ``loadtest/scenarios/``: ``bench-hop.toml`` (the step ledger off)
and ``bench-hop-ledger.toml`` (on, the default). Each run starts its own servers as
``jetmesh up`` configures them (JetStream ``sync_interval: always``) and one echo agent
process, measures the floor on that nats-server just before the load (``[floor]``: 256 B,
64 in flight), then keeps 64 requests of 256 B in flight for a fixed time. The floor moves
by 15% or more from run to run on a shared two-core machine, so the scenarios alternate
``--runs`` times and the table gives each run's ratio to its own floor and their median.

Every figure printed is read back from the runs' reports (``OUT/run<n>/<scenario>/
report.json``, beside each its ``report.md``); ``--table OUT`` prints the table of reports
already written, without running anything.

    python -m loadtest.bench [--runs 3] [--seconds 8] [--out out/bench] [--table OUT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import uvloop

from jetmesh import MeshSettings
from jetmesh.load import (
    LoadReport,
    Scenario,
    floor_ratio,
    load_scenario,
    markdown,
    read_report,
    run_load,
    write_report,
)
from loadtest.stats import RunResult, format_table

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
BENCH = ("bench-hop.toml", "bench-hop-ledger.toml")
"""The rows, in the order each run measures them."""


def scenarios(seconds: float | None) -> list[Scenario]:
    """The bench scenarios, each ``seconds`` long when given."""
    return [load_scenario(SCENARIOS / name, seconds=seconds) for name in BENCH]


async def measure(runs: int, seconds: float | None, out: Path) -> list[Path]:
    """Run every bench scenario ``runs`` times, alternating; write each report (JSON and
    Markdown) under ``out``; return the JSON reports' paths in the order they ran."""
    written = []
    for run in range(1, runs + 1):
        for scenario in scenarios(seconds):
            report = await run_load(scenario, MeshSettings())
            folder = out / f"run{run}" / scenario.name
            write_report(folder / "report.json", report)
            (folder / "report.md").write_text(markdown(report))
            written.append(folder / "report.json")
            ratio = floor_ratio(report)
            floor = report.floor.rate if report.floor is not None else 0.0
            print(
                f"run {run}/{runs} {scenario.name}: {report.completed / report.seconds:,.0f}/s, "
                f"floor {floor:,.0f}/s, ratio {ratio or 0.0:.3f}",
                file=sys.stderr,
            )
    return written


def row(report: LoadReport) -> RunResult:
    """A report as a table row: requests sent, failed (errors and lost), completed/s."""
    latency = report.latency_ms
    return RunResult(
        name=report.scenario,
        requests=report.sent,
        errors=report.errors + report.lost,
        seconds=report.seconds,
        throughput=report.completed / report.seconds if report.seconds > 0 else 0.0,
        p50_ms=latency.get("p50", 0.0),
        p99_ms=latency.get("p99", 0.0),
        p999_ms=latency.get("p99.9", 0.0),
    )


def floor_row(report: LoadReport) -> RunResult:
    """The floor a report measured before its load, as a table row."""
    floor = report.floor
    if floor is None:
        raise ValueError(f"{report.scenario}: the report has no floor (no [floor] section)")
    return RunResult(
        name="floor",
        requests=floor.requests,
        errors=floor.errors,
        seconds=floor.seconds,
        throughput=floor.rate,
        p50_ms=floor.p50_ms,
        p99_ms=floor.p99_ms,
        p999_ms=floor.p999_ms,
    )


def table(reports: list[LoadReport]) -> str:
    """The README's table: each report's floor then its row, in the order they ran, then
    each scenario's ratio to its own floor per run and the median.

    Raises:
        ValueError: a report has no floor.
    """
    first = next((r.floor for r in reports if r.floor is not None), None)
    if first is None:
        raise ValueError("no report with a floor")
    names = list(dict.fromkeys(r.scenario for r in reports))
    runs = max(sum(r.scenario == name for r in reports) for name in names)
    lines = [
        f"{first.payload_bytes} B payload, {first.concurrency} in flight, "
        f"{os.cpu_count()} CPUs, {runs} run(s), each row its floor then its load "
        f"({reports[0].arrival}, {reports[0].seconds:g} s after {reports[0].warmup_s:g} s)",
        format_table([r for report in reports for r in (floor_row(report), row(report))]),
    ]
    for name in names:
        ratios = [floor_ratio(r) or 0.0 for r in reports if r.scenario == name]
        lines.append(f"ratio {name}/floor per run: " + ", ".join(f"{x:.3f}" for x in ratios))
        lines.append(f"median ratio {name}/floor: {statistics.median(ratios):.3f}")
    return "\n".join(lines)


def written_reports(out: Path) -> list[Path]:
    """The reports under ``out`` in the order they ran (run by run, bench order)."""
    order = {Path(name).stem: i for i, name in enumerate(BENCH)}
    found = sorted(out.glob("run*/*/report.json"))
    return sorted(
        found,
        key=lambda p: (int(p.parent.parent.name[3:] or 0), order.get(p.parent.name, 99)),
    )


def main(argv: list[str] | None = None) -> None:
    """Run the bench (or ``--table``: read the reports) and print the table; exit 1 when a
    run failed its objectives (a request lost)."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="alternate the scenarios (1..10)")
    parser.add_argument("--seconds", type=float, help="each load this long (default: 8 s)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="reports")
    parser.add_argument("--table", type=Path, metavar="OUT", help="print the table of OUT")
    args = parser.parse_args(argv)
    if args.table is not None:
        paths = written_reports(args.table)
    else:
        runs = min(max(args.runs, 1), 10)
        try:
            paths = uvloop.run(measure(runs, args.seconds, args.out))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
    reports = [read_report(path) for path in paths]
    if not reports:
        raise SystemExit(f"no reports under {args.table}")
    print(table(reports))
    if any(r.verdict == "fail" for r in reports):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
