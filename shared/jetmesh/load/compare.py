"""Two load runs side by side, and several generator processes' reports made one.

:func:`compare_reports` puts each figure of run B next to run A's, with the change and a
verdict: **better**, **worse**, or **same** when the change is within the figure's noise
band (:data:`RATE_BAND` for the achieved rate, :data:`LATENCY_BAND` for latencies, with
:data:`LATENCY_FLOOR_MS` below which a latency change is timer noise, :data:`ERROR_RATE_BAND`
for the error rate; counts of lost, duplicated and dead-lettered requests have no band:
one more is worse). A CI job fails the build when its boolean says something got worse.
With limits (``{"p99": 2.0}``: B's p99 at most twice A's, :func:`parse_limit`), the limits
alone decide: a run expected to differ from its baseline (one with faults or poison) is
judged by how much.

:func:`merge_reports` adds up the reports of generator processes that drove one run
together: their latency histograms merged (HdrHistogram, from each report's ``histogram``;
needs the ``load`` extra), counts and rates summed, timelines merged second by second.

Example:
    >>> text, worse = compare_reports(read_report(a), read_report(b))  # doctest: +SKIP
    >>> worse                                                          # doctest: +SKIP
    True
    >>> compare_reports(a_report, b_report, limits={"p99": 2.0})[1]   # doctest: +SKIP
    False
"""

from __future__ import annotations

import binascii
import math
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .._exceptions import ConfigError
from .report import LoadReport, RoleShare, SloResult, Window

__all__ = ["compare_reports", "merge_reports", "parse_limit"]

RATE_BAND = 0.05
"""A change of the achieved rate within 5% of run A's is noise: the same."""

LATENCY_BAND = 0.10
"""A change of a latency within 10% of run A's is noise: the same."""

LATENCY_FLOOR_MS = 0.1
"""A change of a latency within 0.1 ms is noise whatever its percentage."""

ERROR_RATE_BAND = 0.001
"""A change of the error rate within 0.1 percentage point (or 10% of A's) is noise."""

Verdict = Literal["better", "worse", "same"]


@dataclass(frozen=True)
class _Figure:
    name: str
    a: float
    b: float
    band: float
    higher_is_better: bool
    unit: str

    @property
    def verdict(self) -> Verdict:
        change = self.b - self.a
        if abs(change) <= self.band:
            return "same"
        return "better" if (change > 0) == self.higher_is_better else "worse"


def compare_reports(
    a: LoadReport, b: LoadReport, limits: Mapping[str, float] | None = None
) -> tuple[str, bool]:
    """Compare run ``b`` with run ``a``, figure by figure.

    The figures: the achieved rate, latency p50, p99 and p99.9, the error rate, the lost,
    duplicated and dead-lettered counts, and each role's handling p50 (roles in both runs).
    Each comes with A's and B's values, the change (absolute and in %) and its verdict;
    the text ends with the overall verdict: worse if any figure is, else better if any
    figure is, else the same. Each limit then gets a row: B's figure against ``ratio``
    times A's.

    Args:
        a: The reference run (e.g. the main branch's).
        b: The run under judgement.
        limits: Figure name to the largest ratio B/A that passes (``{"p99": 2.0}``); a
            name is a figure's as the table gives it (``latency p99``, ``lost``,
            ``worker handle p50``), ``latency`` may be left out (``p99``). None or empty:
            no limits.

    Returns:
        The comparison as Markdown, and whether B fails: without limits, whether anything
        got worse beyond its band; with limits, whether B went beyond one of them (the limits
        alone decide then, the verdicts of the noise bands are only shown).

    Raises:
        ConfigError: a limit names no figure of the comparison, or its ratio is not a
            positive number.
    """
    figures = _figures(a, b)
    checked = _limits(figures, limits or {})
    rows = [
        (
            f.name,
            _value(f.a, f.unit),
            _value(f.b, f.unit),
            _change(f),
            f"**{f.verdict}**" if f.verdict == "worse" else f.verdict,
        )
        for f in figures
    ]
    lines = [f"# Load runs compared: {a.scenario} (A) and {b.scenario} (B)", ""]
    if a.arrival != b.arrival:
        lines += [f"The runs asked for different loads: A {a.arrival}, B {b.arrival}.", ""]
    for name, report in (("A", a), ("B", b)):
        if report.saturated:
            lines += [f"Run {name}'s generator was saturated: its latencies understate.", ""]
    lines += [
        "| Figure | A | B | Change | Verdict |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"Noise bands: achieved rate {RATE_BAND:.0%}; latencies {LATENCY_BAND:.0%} or "
        f"{LATENCY_FLOOR_MS:g} ms; error rate {LATENCY_BAND:.0%} or "
        f"{ERROR_RATE_BAND * 100:g} points; lost, duplicated and dead-lettered: none.",
        "",
    ]
    worse = [f.name for f in figures if f.verdict == "worse"]
    better = [f.name for f in figures if f.verdict == "better"]
    if worse:
        lines.append(f"Overall: **worse** ({', '.join(worse)}).")
    elif better:
        lines.append(f"Overall: **better** ({', '.join(better)}).")
    else:
        lines.append("Overall: **the same** within the noise bands.")
    if not checked:
        return "\n".join(lines) + "\n", bool(worse)
    lines += ["", *_limit_lines(checked)]
    return "\n".join(lines) + "\n", any(limit.exceeded for limit in checked)


def parse_limit(text: str) -> tuple[str, float]:
    """A ``NAME=RATIO`` limit (``p99=2.0``): the figure's name and the largest ratio B/A
    that passes.

    Raises:
        ConfigError: not ``NAME=RATIO``, or the ratio is not a positive number.
    """
    name, sep, ratio = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"limit {text!r}: give NAME=RATIO, e.g. p99=2.0")
    return name.strip(), _ratio(name.strip(), ratio.strip())


def _ratio(name: str, text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        ratio = math.nan
    if not (ratio > 0 and math.isfinite(ratio)):
        raise ConfigError(f"limit {name}: the ratio must be a positive number, not {text!r}")
    return ratio


@dataclass(frozen=True)
class _Limit:
    figure: _Figure
    ratio: float

    @property
    def exceeded(self) -> bool:
        return self.figure.b > self.ratio * self.figure.a

    def row(self) -> str:
        f = self.figure
        times = f"{f.b / f.a:.2f}" if f.a else ("-" if f.b == 0 else "new")
        verdict = "**exceeded**" if self.exceeded else "ok"
        cells = (f"{f.name} <= {self.ratio:g}x A", _value(f.a, f.unit), _value(f.b, f.unit))
        return "| " + " | ".join((*cells, times, verdict)) + " |"


def _limits(figures: list[_Figure], limits: Mapping[str, float]) -> list[_Limit]:
    """Each limit with the figure it names (``p99`` is ``latency p99``)."""
    by_name = {f.name: f for f in figures}
    checked = []
    for name, ratio in limits.items():
        figure = by_name.get(name) or by_name.get(f"latency {name}")
        if figure is None:
            known = ", ".join(by_name)
            raise ConfigError(f"limit {name}: no such figure in the comparison ({known})")
        checked.append(_Limit(figure, _ratio(name, str(ratio))))
    return checked


def _limit_lines(checked: list[_Limit]) -> list[str]:
    lines = [
        "Limits (B's figure at most the ratio times A's):",
        "",
        "| Limit | A | B | B / A | Verdict |",
        "|---|---|---|---|---|",
        *(limit.row() for limit in checked),
        "",
    ]
    exceeded = [
        f"{limit.figure.name} over {limit.ratio:g}x A" for limit in checked if limit.exceeded
    ]
    if exceeded:
        lines.append(f"Limits: **B fails** ({', '.join(exceeded)}).")
    else:
        lines.append("Limits: B passes, every limit held (the limits decide, not the noise bands).")
    return lines


def _figures(a: LoadReport, b: LoadReport) -> list[_Figure]:
    band = a.achieved_rate * RATE_BAND
    figures = [_Figure("achieved rate", a.achieved_rate, b.achieved_rate, band, True, "/s")]
    for key in ("p50", "p99", "p99.9"):
        if key in a.latency_ms and key in b.latency_ms:
            figures.append(_latency(f"latency {key}", a.latency_ms[key], b.latency_ms[key]))
    rate_a, rate_b = _error_rate(a), _error_rate(b)
    band = max(rate_a * LATENCY_BAND, ERROR_RATE_BAND)
    figures.append(_Figure("error rate", rate_a, rate_b, band, False, "%"))
    for name, count_a, count_b in (
        ("lost", a.lost, b.lost),
        ("duplicated", a.duplicated, b.duplicated),
        ("dead-lettered", a.dead_lettered, b.dead_lettered),
    ):
        figures.append(_Figure(name, count_a, count_b, 0, False, ""))
    roles_b = {r.role: r for r in b.roles}
    for role in a.roles:
        if role.role in roles_b:
            after = roles_b[role.role].handle_ms_p50
            figures.append(_latency(f"{role.role} handle p50", role.handle_ms_p50, after))
    return figures


def _latency(name: str, a: float, b: float) -> _Figure:
    return _Figure(name, a, b, max(a * LATENCY_BAND, LATENCY_FLOOR_MS), False, "ms")


def _error_rate(report: LoadReport) -> float:
    return report.errors / report.sent if report.sent else 0.0


def _value(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.2%}"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "/s":
        return f"{value:,.1f}/s"
    return f"{value:,.0f}"


def _change(f: _Figure) -> str:
    delta = f.b - f.a
    if delta == 0:
        return "0"
    sign = "+" if delta > 0 else "-"
    if f.unit == "%":
        absolute = f"{sign}{abs(delta) * 100:.2f} points"
    elif f.unit == "ms":
        absolute = f"{sign}{abs(delta):,.2f} ms"
    elif f.unit == "/s":
        absolute = f"{sign}{abs(delta):,.1f}/s"
    else:
        absolute = f"{sign}{abs(delta):,.0f}"
    if f.a:
        return f"{absolute} ({delta / f.a:+.1%})"
    return f"{absolute} (new)"


_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_SIGNIFICANT_DIGITS = 3


def merge_reports(reports: Sequence[LoadReport]) -> LoadReport:
    """One report from the reports of generator processes that drove one run together.

    - Latencies: the reports' HdrHistograms (``histogram``) decoded and added, and the
      percentiles read from the sum. When a report has no histogram, each percentile is
      the largest of the reports' (an upper bound of the union's) and the mean is
      weighted by completions.
    - Counts, the rate asked and the rate achieved are summed; saturated if any was, the
      lag the largest; the run starts at the earliest start and lasts the longest.
    - Timelines are merged by window (``t``): counts summed, p50 and p99 the largest of the
      processes' for that second (an upper bound), memory by process name.
    - Roles are merged by name: hops summed, p50s and share weighted by hops, p99s the
      largest.
    - Objectives are judged again on the merged figures (``p50_ms``, ``p99_ms``,
      ``error_rate``, ``no_loss``; another objective holds only if it held in every
      report); audit figures are kept as each report has them; the verdict follows.

    Args:
        reports: One report per generator process, at least one.

    Returns:
        The merged report (just the report itself when there is one).

    Raises:
        ValueError: No reports, or a histogram that is not an encoded HdrHistogram.
        ConfigError: hdrhistogram is not installed (it comes with the ``load`` extra).
    """
    if not reports:
        raise ValueError("merge_reports needs at least one report")
    if len(reports) == 1:
        return reports[0]
    first = reports[0]
    arrivals = {r.arrival for r in reports}
    asked = [r.asked_rate for r in reports]
    latency, histogram = _merged_latency(reports)
    merged = LoadReport(
        scenario=first.scenario,
        target=first.target,
        started_at=min(r.started_at for r in reports),
        seconds=max(r.seconds for r in reports),
        warmup_s=max(r.warmup_s for r in reports),
        arrival=(
            f"{len(reports)} x {first.arrival}"
            if len(arrivals) == 1
            else " + ".join(r.arrival for r in reports)
        ),
        asked_rate=None if any(x is None for x in asked) else sum(x or 0.0 for x in asked),
        achieved_rate=sum(r.achieved_rate for r in reports),
        saturated=any(r.saturated for r in reports),
        lag_p99_ms=max(r.lag_p99_ms for r in reports),
        sent=sum(r.sent for r in reports),
        completed=sum(r.completed for r in reports),
        errors=sum(r.errors for r in reports),
        lost=sum(r.lost for r in reports),
        duplicated=sum(r.duplicated for r in reports),
        dead_lettered=sum(r.dead_lettered for r in reports),
        latency_ms=latency,
        timeline=_merged_timeline(reports),
        roles=_merged_roles(reports),
        histogram=histogram,
        audit=[f for r in reports for f in r.audit],
    )
    slos = _rejudged(reports, merged)
    held = all(s.ok for s in slos) and all(f.ok for f in merged.audit)
    verdict: Literal["pass", "fail"] = "pass" if held else "fail"
    return msgspec.structs.replace(merged, slos=slos, verdict=verdict)


def _hdrh() -> tuple[Any, tuple[type[Exception], ...]]:
    """HdrHistogram and the errors its decoding raises, from the optional ``load`` extra."""
    try:
        from hdrh.codec import (
            HdrCookieException,
            HdrHistogramSettingsException,
            HdrLengthException,
        )
        from hdrh.histogram import HdrHistogram
    except ImportError as exc:
        raise ConfigError(
            "merging load reports needs hdrhistogram: pip install 'jetmesh[load]'"
        ) from exc
    errors = (HdrCookieException, HdrLengthException, HdrHistogramSettingsException)
    return HdrHistogram, (*errors, binascii.Error, zlib.error, ValueError, TypeError)


def _merged_latency(reports: Sequence[LoadReport]) -> tuple[dict[str, float], str]:
    if any(not r.histogram for r in reports):
        return _bounded_latency(reports), ""
    hdr, decode_errors = _hdrh()
    total = hdr(_LOWEST_US, _HIGHEST_US, _SIGNIFICANT_DIGITS)
    for report in reports:
        try:
            total.add(hdr.decode(report.histogram))
        except decode_errors as exc:
            raise ValueError(
                f"a report's histogram is not an encoded HdrHistogram ({type(exc).__name__})"
            ) from exc
    if total.get_total_count() == 0:
        return _bounded_latency(reports), total.encode().decode()
    latency = {
        key: total.get_value_at_percentile(float(key[1:])) / 1000.0
        for key in ("p50", "p90", "p99", "p99.9")
    }
    latency["max"] = total.get_max_value() / 1000.0
    latency["mean"] = total.get_mean_value() / 1000.0
    encoded = total.encode()
    return latency, encoded.decode() if isinstance(encoded, bytes) else str(encoded)


def _bounded_latency(reports: Sequence[LoadReport]) -> dict[str, float]:
    keys = {k for r in reports for k in r.latency_ms}
    latency = {k: max(r.latency_ms.get(k, 0.0) for r in reports) for k in keys}
    completed = sum(r.completed for r in reports)
    if "mean" in keys and completed:
        latency["mean"] = sum(r.latency_ms.get("mean", 0.0) * r.completed for r in reports) / (
            completed
        )
    return latency


def _merged_timeline(reports: Sequence[LoadReport]) -> list[Window]:
    by_t: dict[float, list[Window]] = defaultdict(list)
    for report in reports:
        for window in report.timeline:
            by_t[round(window.t, 3)].append(window)
    merged = []
    for t in sorted(by_t):
        windows = by_t[t]
        rss: dict[str, float] = {}
        for window in windows:
            for name, mb in window.rss_mb.items():
                rss[name] = max(rss.get(name, 0.0), mb)
        merged.append(
            Window(
                t=t,
                sent=sum(w.sent for w in windows),
                completed=sum(w.completed for w in windows),
                errors=sum(w.errors for w in windows),
                p50_ms=max(w.p50_ms for w in windows),
                p99_ms=max(w.p99_ms for w in windows),
                rss_mb=rss,
            )
        )
    return merged


def _merged_roles(reports: Sequence[LoadReport]) -> list[RoleShare]:
    by_role: dict[str, list[RoleShare]] = defaultdict(list)
    for report in reports:
        for role in report.roles:
            by_role[role.role].append(role)
    merged = []
    for name, shares in by_role.items():
        hops = sum(s.hops for s in shares)

        def weighted(values: list[float], shares: list[RoleShare] = shares, n: int = hops) -> float:
            if not n:
                return max(values)
            return sum(v * s.hops for v, s in zip(values, shares, strict=True)) / n

        merged.append(
            RoleShare(
                role=name,
                hops=hops,
                queue_ms_p50=weighted([s.queue_ms_p50 for s in shares]),
                handle_ms_p50=weighted([s.handle_ms_p50 for s in shares]),
                queue_ms_p99=max(s.queue_ms_p99 for s in shares),
                handle_ms_p99=max(s.handle_ms_p99 for s in shares),
                share=weighted([s.share for s in shares]),
            )
        )
    return sorted(merged, key=lambda r: r.share, reverse=True)


def _rejudged(reports: Sequence[LoadReport], merged: LoadReport) -> list[SloResult]:
    failed = merged.errors + merged.lost
    measured = {
        "p50_ms": merged.latency_ms.get("p50"),
        "p99_ms": merged.latency_ms.get("p99"),
        "error_rate": failed / merged.sent if merged.sent else 0.0,
        "no_loss": float(merged.lost),
    }
    by_name: dict[str, list[SloResult]] = defaultdict(list)
    for report in reports:
        for slo in report.slos:
            by_name[slo.name].append(slo)
    results = []
    for name, slos in by_name.items():
        limit, value = slos[0].limit, measured.get(name)
        if value is None:
            worst = max(s.value for s in slos)
            results.append(
                SloResult(name=name, limit=limit, value=worst, ok=all(s.ok for s in slos))
            )
        else:
            results.append(SloResult(name=name, limit=limit, value=value, ok=value <= limit))
    return results
