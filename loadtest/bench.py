"""``make bench``: one signed mesh hop against two bare nats-py floors, on one server, with
traces on and on a three-node cluster, as ``jetmesh load`` scenarios.

    floor:         requester --core request--> responder process --core reply-->
    durable floor: requester --task, JetStream publish+ack--> FLOOR_..._TASKS --pull-->
                   responder process (event, JetStream publish+ack; core reply; task ack)
    hop:           caller --signed task, JetStream publish+ack--> MESH_TASKS --pull--> echo
                   agent process (verify, handle, events) --signed reply--> caller (verify)

Each row is a scenario of ``loadtest/scenarios/``. On one server: ``bench-hop.toml`` (the
step ledger off), ``bench-hop-alone.toml`` (the same with the group commit off: every task
and event stored alone), ``bench-hop-seq.toml`` (one request at a time, both floors too),
``bench-hop-2m.toml`` (the same with the server's default flush,
sync_interval 2m), ``bench-hop-ledger.toml`` (on, the default) and ``bench-hop-traces.toml``
(the ledger off, OpenTelemetry traces exported by the caller and the echo agent to a sink
in this process that counts the spans and drops them, :mod:`loadtest.otlp_sink`). On three
nats-servers with every stream at 3 replicas (``[mesh] cluster = 3``, as ``jetmesh up
--cluster 3``): ``bench-r3-always.toml`` (an fsync per stored message on every node),
``bench-r3-2m.toml`` (the server's default flush), ``bench-r3-ledger.toml`` and
``bench-r3-ledger-wait.toml`` (the step ledger on the cluster's Redis primary, without and
with waiting for its replica).

Each run starts its own servers as ``jetmesh up`` configures them (JetStream
``sync_interval: always`` unless the scenario says otherwise) and one echo agent process,
measures the floor on that nats-server (a cluster's first node) just before the load
(``[floor]``: 256 B, 64 in flight; the one-server scenarios the durable floor too, the same
stored messages and fsync setting as the mesh's hop without signing or envelopes), then
keeps 64 requests of 256 B in flight for a fixed time. The floor moves by 15% or more
from run to run on a shared two-core machine, so the one-server scenarios alternate
``--runs`` times, then the cluster scenarios ``--cluster-runs`` times (a cluster takes
longer to start), and the table gives each run's ratio to its own floor(s) and their
median.

Every figure printed is read back from the runs' reports (``OUT/run<n>/<scenario>/
report.json``, beside each its ``report.md``; the traced run's spans are figures of its
report); ``--table OUT`` prints the table of reports already written, without running
anything.

    python -m loadtest.bench [--runs 3] [--cluster-runs 1] [--seconds 8] [--out out/bench]
                             [--table OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import msgspec
import uvloop

from jetmesh import MeshSettings
from jetmesh.load import (
    AuditFigure,
    LoadReport,
    Scenario,
    floor_ratio,
    load_scenario,
    markdown,
    read_report,
    run_load,
    write_report,
)
from jetmesh.processes import interruptible
from jetmesh.telemetry import shutdown_tracing
from loadtest.otlp_sink import SpanSink
from loadtest.stats import RunResult, format_table

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ONE_SERVER = (
    "bench-hop.toml",
    "bench-hop-alone.toml",
    "bench-hop-seq.toml",
    "bench-hop-2m.toml",
    "bench-hop-ledger.toml",
    "bench-hop-traces.toml",
)
"""The one-server rows, in the order each run measures them."""
CLUSTER = (
    "bench-r3-always.toml",
    "bench-r3-2m.toml",
    "bench-r3-ledger.toml",
    "bench-r3-ledger-wait.toml",
)
"""The cluster rows, in the order each run measures them (after the one-server runs)."""
BENCH = ONE_SERVER + CLUSTER
TRACED = "bench-hop-traces"
"""The scenario whose caller and agent export their traces to the sink."""
SPANS = "spans exported"
SPANS_A_HOP = "spans a hop"


def scenarios(names: tuple[str, ...], seconds: float | None) -> list[Scenario]:
    """The bench scenarios ``names``, each ``seconds`` long when given."""
    return [load_scenario(SCENARIOS / name, seconds=seconds) for name in names]


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` set in this process for the block (the caller's tracing), then as
    they were."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def traced(scenario: Scenario, sink: SpanSink) -> LoadReport:
    """Run ``scenario`` with the caller (this process's door) and the launched processes
    (``[mesh] env``) exporting their traces to ``sink``; the report gains the spans
    received as figures (per hop: the warm-up's hops estimated at the measured rate)."""
    if scenario.mesh is None:
        raise ValueError(f"{scenario.name}: a traced scenario launches its mesh")
    env = sink.env()
    scenario = scenario.model_copy(
        update={"mesh": scenario.mesh.model_copy(update={"env": {**scenario.mesh.env, **env}})}
    )
    before = sink.spans
    with environment(env):
        try:
            report = await run_load(scenario, MeshSettings())
        finally:
            await asyncio.to_thread(shutdown_tracing)  # the caller's last spans
    spans = sink.spans - before
    seconds = report.seconds or 1.0
    hops = report.completed * (seconds + report.warmup_s) / seconds
    figures = [
        AuditFigure(name=SPANS, value=spans, detail="by the caller and the echo agent"),
        AuditFigure(
            name=SPANS_A_HOP,
            value=round(spans / hops, 2) if hops else 0.0,
            detail="the warm-up's hops estimated at the measured rate",
        ),
    ]
    return msgspec.structs.replace(report, audit=[*report.audit, *figures])


async def measure(runs: int, cluster_runs: int, seconds: float | None, out: Path) -> list[Path]:
    """Run the one-server scenarios ``runs`` times, alternating, then the cluster ones
    ``cluster_runs`` times; write each report (JSON and Markdown) under ``out``; return the
    JSON reports' paths in the order they ran."""
    written = []
    rounds: list[tuple[int, tuple[str, ...]]] = [(run, ONE_SERVER) for run in range(1, runs + 1)]
    rounds += [(run, CLUSTER) for run in range(1, cluster_runs + 1)]
    with SpanSink() as sink:
        for run, names in rounds:
            for scenario in scenarios(names, seconds):
                if scenario.name == TRACED:
                    report = await traced(scenario, sink)
                else:
                    report = await run_load(scenario, MeshSettings())
                folder = out / f"run{run}" / scenario.name
                write_report(folder / "report.json", report)
                (folder / "report.md").write_text(markdown(report))
                written.append(folder / "report.json")
                ratio = floor_ratio(report)
                floor = report.floor.rate if report.floor is not None else 0.0
                durable = ""
                if report.durable_floor is not None:
                    durable = (
                        f", durable floor {report.durable_floor.rate:,.0f}/s, "
                        f"ratio {floor_ratio(report, 'durable') or 0.0:.3f}"
                    )
                print(
                    f"run {run}/{runs if names is ONE_SERVER else cluster_runs} "
                    f"{scenario.name}: {report.completed / report.seconds:,.0f}/s, "
                    f"floor {floor:,.0f}/s, ratio {ratio or 0.0:.3f}{durable}",
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


DURABLE = "durable-floor"
"""The durable floor's name in the table."""


def floor_row(report: LoadReport, durable: bool = False) -> RunResult:
    """The floor (or the durable floor) a report measured before its load, as a table row."""
    floor = report.durable_floor if durable else report.floor
    if floor is None:
        raise ValueError(f"{report.scenario}: the report has no such floor (see its [floor])")
    return RunResult(
        name=DURABLE if durable else "floor",
        requests=floor.requests,
        errors=floor.errors,
        seconds=floor.seconds,
        throughput=floor.rate,
        p50_ms=floor.p50_ms,
        p99_ms=floor.p99_ms,
        p999_ms=floor.p999_ms,
    )


def table(reports: list[LoadReport]) -> str:
    """The table of docs/benchmarks.md: each report's floor, its durable floor (if
    measured), then its row, in the order they ran; then each scenario's ratio to its own
    floor per run and the median, and the same to its durable floor.

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
        f"{os.cpu_count()} CPUs, up to {runs} run(s) a row, each row its floor(s) then its "
        f"load ({reports[0].arrival}, {reports[0].seconds:g} s after {reports[0].warmup_s:g} s)",
        format_table([r for report in reports for r in rows_of(report)]),
    ]
    for name in names:
        ratios = [floor_ratio(r) or 0.0 for r in reports if r.scenario == name]
        lines.append(f"ratio {name}/floor per run: " + ", ".join(f"{x:.3f}" for x in ratios))
        lines.append(f"median ratio {name}/floor: {statistics.median(ratios):.3f}")
        durable = [
            floor_ratio(r, "durable") or 0.0
            for r in reports
            if r.scenario == name and r.durable_floor is not None
        ]
        if durable:
            said = ", ".join(f"{x:.3f}" for x in durable)
            lines.append(f"ratio {name}/{DURABLE} per run: {said}")
            lines.append(f"median ratio {name}/{DURABLE}: {statistics.median(durable):.3f}")
    lines += [spans for name in names if (spans := spans_line(reports, name))]
    return "\n".join(lines)


def rows_of(report: LoadReport) -> list[RunResult]:
    """A report's rows: its floor, its durable floor when it measured one, its load."""
    durable = [floor_row(report, durable=True)] if report.durable_floor is not None else []
    return [floor_row(report), *durable, row(report)]


def spans_line(reports: list[LoadReport], name: str) -> str:
    """What the sink received in the traced runs of scenario ``name``, in words ("" when
    none was traced)."""
    runs = [
        figures
        for r in reports
        if r.scenario == name and SPANS in (figures := {f.name: f.value for f in r.audit})
    ]
    if not runs:
        return ""
    return (
        f"spans exported by {name} per run: "
        + ", ".join(f"{f[SPANS]:,.0f}" for f in runs)
        + " (a hop: "
        + ", ".join(f"{f.get(SPANS_A_HOP, 0.0):.2f}" for f in runs)
        + "; the caller's send, the agent's process and invoke_agent)"
    )


def written_reports(out: Path) -> list[Path]:
    """The reports under ``out`` in the order they ran (the one-server rows run by run,
    then the cluster rows run by run, each in bench order)."""
    order = {Path(name).stem: i for i, name in enumerate(BENCH)}
    cluster = {Path(name).stem for name in CLUSTER}
    found = sorted(out.glob("run*/*/report.json"))
    return sorted(
        found,
        key=lambda p: (
            p.parent.name in cluster,
            int(p.parent.parent.name[3:] or 0),
            order.get(p.parent.name, 99),
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """Run the bench (or ``--table``: read the reports) and print the table; exit 1 when a
    run failed its objectives (a request lost)."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="alternate the one-server scenarios (1..10)"
    )
    parser.add_argument(
        "--cluster-runs", type=int, default=1, help="alternate the cluster scenarios (0..10)"
    )
    parser.add_argument("--seconds", type=float, help="each load this long (default: 8 s)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="reports")
    parser.add_argument("--table", type=Path, metavar="OUT", help="print the table of OUT")
    args = parser.parse_args(argv)
    if args.table is not None:
        paths = written_reports(args.table)
    else:
        runs = min(max(args.runs, 1), 10)
        cluster_runs = min(max(args.cluster_runs, 0), 10)
        with interruptible():
            paths = uvloop.run(measure(runs, cluster_runs, args.seconds, args.out))
    reports = [read_report(path) for path in paths]
    if not reports:
        raise SystemExit(f"no reports under {args.table}")
    print(table(reports))
    if any(r.verdict == "fail" for r in reports):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
