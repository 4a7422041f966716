"""A load run's report for people: Markdown (the summary, latencies, objectives, where the
time went, a compact timeline) and PNG plots of the run over time.

Both read a :class:`~jetmesh.load.report.LoadReport`, so they work as well on a report
read back from ``report.json`` as on one just measured. The plots need matplotlib (the
``load`` extra); it is imported only when :func:`plots` is called, and drawn with its Agg
renderer on :class:`~matplotlib.figure.Figure` objects: no display, no pyplot state.

Example:
    >>> report = read_report(Path("out/report.json"))     # doctest: +SKIP
    >>> Path("out/report.md").write_text(markdown(report))  # doctest: +SKIP
    >>> [p.name for p in plots(report, Path("out"))]        # doctest: +SKIP
    ['latency_over_time.png', 'throughput_over_time.png', 'errors_over_time.png']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import ConfigError
from .floor import floor_ratio
from .report import AuditFigure, FaultRecord, LoadReport, RoleShare, Window

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["markdown", "plots"]

TIMELINE_ROWS = 12
"""At most this many rows in the Markdown timeline: longer runs group seconds together."""

LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")
"""The latency figures of a report, in the order they are shown."""

_DPI = 80
_SIZE = (8.0, 3.6)


def markdown(report: LoadReport) -> str:
    """The report as a Markdown page.

    It holds the run (target, arrival, duration), a warning in words when the generator
    was saturated, the rate asked and achieved, the counts (sent, completed, errors, lost,
    duplicated, dead-lettered), the floors and the run's ratio to each (``[floor]``), the
    latency percentiles, each objective with pass or FAIL,
    the audit's figures with their bounds, the per-role breakdown with the bottleneck
    named, the faults struck, and the timeline grouped into at most :data:`TIMELINE_ROWS` rows.

    Args:
        report: The run's report.

    Returns:
        The page, ending with a newline.
    """
    parts = [
        _head(report),
        _summary(report),
        _floor(report),
        _latency(report),
        _slos(report),
        _audit(report.audit),
        _roles(report.roles),
        _faults(report.faults),
        _timeline(report.timeline),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def _head(report: LoadReport) -> str:
    started = datetime.fromtimestamp(report.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"# Load run: {report.scenario}",
        "",
        f"- Target: {report.target}",
        f"- Arrival: {report.arrival}",
        f"- Started: {started}; measured {report.seconds:g} s after {report.warmup_s:g} s "
        "of warm-up",
        f"- Verdict: **{report.verdict.upper()}**",
    ]
    if report.saturated:
        lines += [
            "",
            "> **The generator was saturated**: it could not send requests on schedule "
            f"(its lag behind the schedule, p99 {report.lag_p99_ms:.0f} ms, passed the "
            "bound). The rate achieved is below the "
            "rate asked, and the latencies understate what clients sending at that rate "
            "would see. Add generator processes or ask for less.",
        ]
    return "\n".join(lines)


def _summary(report: LoadReport) -> str:
    asked = "—" if report.asked_rate is None else f"{report.asked_rate:,.1f}/s"
    error_rate = report.errors / report.sent if report.sent else 0.0
    rows = [
        ("Rate asked", asked),
        ("Rate achieved", f"{report.achieved_rate:,.1f}/s"),
        ("Sent", f"{report.sent:,}"),
        ("Completed", f"{report.completed:,}"),
        ("Errors", f"{report.errors:,} ({error_rate:.2%})"),
        ("Lost", f"{report.lost:,}"),
        ("Duplicated", f"{report.duplicated:,}"),
        ("Dead-lettered", f"{report.dead_lettered:,}"),
    ]
    if report.generators > 1:
        rows.insert(2, ("Generator processes", str(report.generators)))
    return "## Summary\n\n" + _table(("Figure", "Value"), rows)


def _floor(report: LoadReport) -> str:
    floors = [f for f in (report.floor, report.durable_floor) if f is not None]
    if not floors:
        return ""
    completed = report.completed / report.seconds if report.seconds > 0 else 0.0
    said = []
    if report.floor is not None:
        said.append(
            f"The bare nats-py floor on the run's NATS server, just before the load: "
            f"{report.floor.payload_bytes:,} B request/reply between two processes, "
            f"{report.floor.concurrency} in flight."
        )
    if report.durable_floor is not None:
        said.append(
            f"The durable floor: the mesh's stored hop with nats-py alone, "
            f"{report.durable_floor.payload_bytes:,} B, {report.durable_floor.concurrency} "
            f"in flight (each task published to a stream of its own and acked, taken from a "
            f"pull consumer, an event stored and acked, the reply, the task acknowledged; "
            f"{report.durable_floor.stored:,} messages stored)."
        )
    ratios = [
        f"**{ratio:.3f} of the {'floor' if floor.kind == 'request' else 'durable floor'}**"
        for floor in floors
        if (ratio := floor_ratio(report, floor.kind)) is not None
    ]
    if ratios:
        said.append(f"The run completed {completed:,.1f} requests a second: {', '.join(ratios)}.")
    head = ("Floor", "Requests", "Errors", "Seconds", "req/s", "p50 ms", "p99 ms", "p99.9 ms")
    rows = [
        (
            floor.kind,
            f"{floor.requests:,}",
            f"{floor.errors:,}",
            f"{floor.seconds:.2f}",
            f"{floor.rate:,.0f}",
            _ms(floor.p50_ms),
            _ms(floor.p99_ms),
            _ms(floor.p999_ms),
        )
        for floor in floors
    ]
    return "## Floor\n\n" + " ".join(said) + "\n\n" + _table(head, rows)


def _latency(report: LoadReport) -> str:
    keys = [k for k in LATENCY_KEYS if k in report.latency_ms]
    keys += sorted(k for k in report.latency_ms if k not in LATENCY_KEYS)
    if not keys:
        return ""
    note = (
        "Each request's latency runs from its scheduled send time."
        if report.asked_rate is not None
        else "Closed loop: each request's latency runs from its send time."
    )
    table = _table(keys, [[_ms(report.latency_ms[k]) for k in keys]])
    return f"## Latency (ms)\n\n{note}\n\n{table}"


def _slos(report: LoadReport) -> str:
    if not report.slos:
        return ""
    rows = [
        (slo.name, f"{slo.limit:g}", f"{slo.value:g}", "pass" if slo.ok else "**FAIL**")
        for slo in report.slos
    ]
    return "## Objectives\n\n" + _table(("Objective", "Limit", "Measured", "Result"), rows)


def _audit(figures: Sequence[AuditFigure]) -> str:
    if not figures:
        return ""
    rows = [
        (f.name, f"{f.value:g}", bounds(f), "pass" if f.ok else "**FAIL**", f.detail)
        for f in figures
    ]
    return "## Audit\n\n" + _table(("Figure", "Value", "Bounds", "Result", "Detail"), rows)


def bounds(figure: AuditFigure) -> str:
    """An audit figure's bounds in words: ``<= 0``, ``>= 300``, ``300..310`` or ``-``."""
    most, least = figure.most, figure.least
    if most is not None and least is not None:
        return f"{least:g}..{most:g}"
    if most is not None:
        return f"<= {most:g}"
    return "-" if least is None else f">= {least:g}"


def _roles(roles: Sequence[RoleShare]) -> str:
    if not roles:
        return ""
    ordered = sorted(roles, key=lambda r: r.share, reverse=True)
    rows = [
        (
            r.role,
            f"{r.hops:,}",
            _ms(r.queue_ms_p50),
            _ms(r.handle_ms_p50),
            _ms(r.queue_ms_p99),
            _ms(r.handle_ms_p99),
            f"{r.share:.1%}",
        )
        for r in ordered
    ]
    head = ("Role", "Hops", "Queue p50", "Handle p50", "Queue p99", "Handle p99", "Share")
    top = ordered[0]
    mostly = "waiting in its queue" if top.queue_ms_p50 > top.handle_ms_p50 else "handling"
    bottleneck = (
        f"Bottleneck: **{top.role}**, {top.share:.1%} of the end-to-end time, mostly "
        f"{mostly} (p50 queue {_ms(top.queue_ms_p50)} ms, handling {_ms(top.handle_ms_p50)} ms)."
    )
    return "## Where the time went (ms)\n\n" + _table(head, rows) + "\n\n" + bottleneck


def _faults(faults: Sequence[FaultRecord]) -> str:
    if not faults:
        return ""
    rows = [
        [f"{f.at:.1f}", f.kind, f.target, "done" if f.done else "NOT DONE", f.detail]
        for f in faults
    ]
    return "## Faults\n\n" + _table(("At s", "Kind", "Target", "Result", "Detail"), rows)


def _timeline(timeline: Sequence[Window]) -> str:
    if not timeline:
        return ""
    size = math.ceil(len(timeline) / TIMELINE_ROWS)
    has_rss = any(w.rss_mb for w in timeline)
    head = ["Seconds", "Sent", "Completed", "Errors", "p50 ms", "p99 ms (worst)"]
    if has_rss:
        head.append("RSS MiB (all processes)")
    rows = []
    for start in range(0, len(timeline), size):
        group = timeline[start : start + size]
        completed = sum(w.completed for w in group)
        p50 = (
            sum(w.p50_ms * w.completed for w in group) / completed
            if completed
            else max(w.p50_ms for w in group)
        )
        first, last = group[0].t, group[-1].t
        span = f"{first:g}" if len(group) == 1 else f"{first:g} to {last:g}"
        row = [
            span,
            f"{sum(w.sent for w in group):,}",
            f"{completed:,}",
            f"{sum(w.errors for w in group):,}",
            _ms(p50),
            _ms(max(w.p99_ms for w in group)),
        ]
        if has_rss:
            row.append(f"{sum(group[-1].rss_mb.values()):,.0f}" if group[-1].rss_mb else "—")
        rows.append(row)
    note = (
        f"Grouped by {size} s: p50 weighted by completions, p99 the worst second."
        if size > 1
        else "One row per second."
    )
    return "## Timeline\n\n" + note + "\n\n" + _table(head, rows)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def plots(report: LoadReport, out_dir: Path) -> list[Path]:
    """Draw the report's plots as PNG files in ``out_dir`` (made if missing).

    Always ``latency_over_time.png`` (p50 and p99 per second), ``throughput_over_time.png``
    (sent and completed per second) and ``errors_over_time.png``; ``role_breakdown.png``
    (each role's queue and handling p50 as stacked bars) when the report has roles;
    ``memory_over_time.png`` (resident memory per process) when its timeline has any. The
    plots over time mark each fault the run struck with a dashed line.

    Args:
        report: The run's report.
        out_dir: The folder to write into; existing files of these names are replaced.

    Returns:
        The files written, in the order above.

    Raises:
        ConfigError: matplotlib is not installed (it comes with the ``load`` extra).
    """
    figure = _figure_class()
    out_dir.mkdir(parents=True, exist_ok=True)
    t = [w.t for w in report.timeline]
    run = f"{report.scenario} ({report.arrival})"
    written = []

    fig = figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(t, [w.p50_ms for w in report.timeline], label="p50")
    ax.plot(t, [w.p99_ms for w in report.timeline], label="p99")
    _decorate(ax, f"{run}: latency", "ms", report.faults)
    written.append(_save(fig, out_dir / "latency_over_time.png"))

    fig = figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(t, [w.sent for w in report.timeline], label="sent")
    ax.plot(t, [w.completed for w in report.timeline], label="completed")
    _decorate(ax, f"{run}: throughput", "requests/s", report.faults)
    written.append(_save(fig, out_dir / "throughput_over_time.png"))

    fig = figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(t, [w.errors for w in report.timeline], width=0.9, color="tab:red", label="errors")
    _decorate(ax, f"{run}: errors", "errors/s", report.faults)
    written.append(_save(fig, out_dir / "errors_over_time.png"))

    if report.roles:
        roles = sorted(report.roles, key=lambda r: r.share, reverse=True)
        names = [r.role for r in roles]
        queue = [r.queue_ms_p50 for r in roles]
        fig = figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
        ax = fig.add_subplot()
        ax.bar(names, queue, label="queue p50")
        ax.bar(names, [r.handle_ms_p50 for r in roles], bottom=queue, label="handle p50")
        for i, r in enumerate(roles):
            top = r.queue_ms_p50 + r.handle_ms_p50
            ax.annotate(f"{r.share:.0%}", (i, top), ha="center", va="bottom")
        ax.margins(y=0.15)
        ax.set_title(f"{run}: where the time went (share of end-to-end)")
        ax.set_ylabel("ms")
        ax.legend()
        written.append(_save(fig, out_dir / "role_breakdown.png"))

    processes = sorted({name for w in report.timeline for name in w.rss_mb})
    if processes:
        fig = figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
        ax = fig.add_subplot()
        for name in processes:
            points = [(w.t, w.rss_mb[name]) for w in report.timeline if name in w.rss_mb]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
        _decorate(ax, f"{run}: resident memory", "MiB", report.faults)
        written.append(_save(fig, out_dir / "memory_over_time.png"))
    return written


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure  # the optional `load` extra
    except ImportError as exc:
        raise ConfigError(
            "the load report's plots need matplotlib: pip install 'jetmesh[load]'"
        ) from exc
    return Figure


def _decorate(ax: Axes, title: str, unit: str, faults: Sequence[FaultRecord] = ()) -> None:
    for i, f in enumerate(faults):  # a dashed line where each fault struck
        ax.axvline(f.at, color="grey", linestyle="--", label="fault" if i == 0 else None)
    ax.set_title(title)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(unit)
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.25 if top > 0 else 1.0)  # room for the legend above the lines
    ax.grid(alpha=0.3)
    ax.legend()


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path
