"""The report for people: the Markdown page holds each figure and names the bottleneck; the
plots are real PNG files, one per view, with the optional ones only when there is data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from matplotlib.image import imread

from jetmesh import ConfigError
from jetmesh.load.render import TIMELINE_ROWS, markdown, plots
from jetmesh.load.report import LoadReport, RoleShare, SloResult, Window

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_report(
    *,
    seconds: int = 10,
    saturated: bool = False,
    roles: bool = True,
    rss: bool = False,
    slow_second: int | None = 7,
) -> LoadReport:
    """A run at 200/s with a bad second: its p99 is 480 ms."""
    timeline = [
        Window(
            t=float(t),
            sent=200,
            completed=198 if t != slow_second else 150,
            errors=2 if t != slow_second else 50,
            p50_ms=4.0 + t * 0.1,
            p99_ms=480.0 if t == slow_second else 12.5,
            rss_mb={"router": 80.0 + t, "worker": 120.0} if rss else {},
        )
        for t in range(seconds)
    ]
    shares = [
        RoleShare(
            role="router",
            hops=1990,
            queue_ms_p50=0.3,
            handle_ms_p50=0.9,
            queue_ms_p99=1.5,
            handle_ms_p99=3.0,
            share=0.18,
        ),
        RoleShare(
            role="worker",
            hops=1990,
            queue_ms_p50=2.75,
            handle_ms_p50=1.25,
            queue_ms_p99=40.0,
            handle_ms_p99=6.0,
            share=0.71,
        ),
    ]
    return LoadReport(
        scenario="single-hop",
        target="nats worker",
        started_at=1_790_000_000.0,
        seconds=float(seconds),
        warmup_s=2.0,
        arrival="constant 200/s",
        asked_rate=200.0,
        achieved_rate=199.6 if not saturated else 143.2,
        saturated=saturated,
        sent=2000,
        completed=1932,
        errors=68,
        lost=3,
        duplicated=1,
        dead_lettered=5,
        latency_ms={
            "p50": 4.41,
            "p90": 9.87,
            "p99": 21.3,
            "p99.9": 477.0,
            "max": 481.2,
            "mean": 5.06,
        },
        timeline=timeline,
        roles=shares if roles else [],
        slos=[
            SloResult(name="p99_ms", limit=50.0, value=21.3, ok=True),
            SloResult(name="error_rate", limit=0.01, value=0.0355, ok=False),
        ],
        verdict="fail",
    )


def test_markdown_holds_each_figure_and_the_verdict() -> None:
    text = markdown(make_report())

    assert text.startswith("# Load run: single-hop\n")
    assert "nats worker" in text
    assert "constant 200/s" in text
    assert "**FAIL**" in text
    assert "| Rate asked | 200.0/s |" in text
    assert "| Rate achieved | 199.6/s |" in text
    for label, value in [
        ("Sent", "2,000"),
        ("Completed", "1,932"),
        ("Errors", "68 (3.40%)"),
        ("Lost", "3"),
        ("Duplicated", "1"),
        ("Dead-lettered", "5"),
    ]:
        assert f"| {label} | {value} |" in text
    assert "| p50 | p90 | p99 | p99.9 | max | mean |" in text
    assert "| 4.41 | 9.87 | 21.30 | 477 | 481 | 5.06 |" in text
    assert "| p99_ms | 50 | 21.3 | pass |" in text
    assert "| error_rate | 0.01 | 0.0355 | **FAIL** |" in text
    assert "saturated" not in text


def test_markdown_names_the_bottleneck_and_why() -> None:
    text = markdown(make_report())

    assert "| worker | 1,990 | 2.75 | 1.25 | 40.00 | 6.00 | 71.0% |" in text
    assert "| router | 1,990 | 0.30 | 0.90 | 1.50 | 3.00 | 18.0% |" in text
    # Sorted by share, the bottleneck first, whatever order the report listed them in.
    assert text.index("| worker |") < text.index("| router |")
    assert "Bottleneck: **worker**, 71.0% of the end-to-end time, mostly waiting in its queue" in (
        text
    )


def test_markdown_warns_in_words_when_the_generator_was_saturated() -> None:
    text = markdown(make_report(saturated=True))

    assert "The generator was saturated" in text
    assert "could not send requests on schedule" in text
    assert "| Rate achieved | 143.2/s |" in text


def test_a_short_timeline_has_a_row_per_second() -> None:
    text = markdown(make_report(seconds=5, slow_second=3))
    timeline = text[text.index("## Timeline") :]

    assert "One row per second." in timeline
    assert "| 3 | 200 | 150 | 50 | 4.30 | 480 |" in timeline
    assert "| 4 | 200 | 198 | 2 | 4.40 | 12.50 |" in timeline


def test_a_long_timeline_is_grouped_and_keeps_the_worst_second() -> None:
    text = markdown(make_report(seconds=600, slow_second=301, rss=True))
    timeline = text[text.index("## Timeline") :]
    rows = [line for line in timeline.splitlines() if line.startswith("| ")][1:]

    assert len(rows) == TIMELINE_ROWS
    assert "Grouped by 50 s" in timeline
    assert "RSS MiB (all processes)" in timeline
    # Seconds 300..349 hold the bad second: its p99 is the group's, its counts are summed.
    assert "| 300 to 349 | 10,000 | 9,852 | 148 |" in timeline
    bad = next(row for row in rows if row.startswith("| 300 to 349 |"))
    assert bad.split(" | ")[5] == "480"
    # Memory at the group's last second: router 80 + 349 and worker 120.
    assert bad.rstrip(" |").endswith("| 549")


def test_a_report_with_no_roles_or_objectives_leaves_their_sections_out() -> None:
    report = make_report(roles=False)
    bare = LoadReport(**{**_fields(report), "slos": [], "verdict": "pass"})
    text = markdown(bare)

    assert "## Where the time went" not in text
    assert "Bottleneck" not in text
    assert "## Objectives" not in text
    assert "**PASS**" in text


def _fields(report: LoadReport) -> dict[str, object]:
    return {name: getattr(report, name) for name in report.__struct_fields__}


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert width > 300
    assert height > 100


def test_plots_are_pngs_one_per_view(tmp_path: Path) -> None:
    written = plots(make_report(), tmp_path / "out")

    assert [p.name for p in written] == [
        "latency_over_time.png",
        "throughput_over_time.png",
        "errors_over_time.png",
        "role_breakdown.png",
    ]
    for path in written:
        assert path.parent == tmp_path / "out"
        _assert_png(path)


def test_plots_add_memory_when_the_timeline_has_it_and_drop_roles_when_there_are_none(
    tmp_path: Path,
) -> None:
    written = plots(make_report(roles=False, rss=True), tmp_path)

    assert [p.name for p in written] == [
        "latency_over_time.png",
        "throughput_over_time.png",
        "errors_over_time.png",
        "memory_over_time.png",
    ]
    for path in written:
        _assert_png(path)


def test_plots_without_matplotlib_name_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    with pytest.raises(ConfigError, match=r"jetmesh\[load\]"):
        plots(make_report(), tmp_path)
    assert list(tmp_path.iterdir()) == []
