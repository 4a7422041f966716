"""Two runs compared figure by figure (better, worse, the same within a noise band), and the
reports of several generator processes merged into one: the merged percentiles are those of
all the latencies together, checked against one histogram of every value."""

from __future__ import annotations

import random
import sys

import msgspec
import pytest
from hdrh.histogram import HdrHistogram

from jetmesh import ConfigError
from jetmesh.load.compare import compare_reports, merge_reports, parse_limit
from jetmesh.load.report import LoadReport, RoleShare, SloResult, Window

LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3


def histogram_of(latencies_ms: list[float]) -> HdrHistogram:
    hist = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
    for ms in latencies_ms:
        hist.record_value(round(ms * 1000))
    return hist


def make_report(
    *,
    rate: float = 500.0,
    p50: float = 4.0,
    p99: float = 20.0,
    p999: float = 40.0,
    errors: int = 10,
    lost: int = 0,
    worker_handle: float = 2.0,
    latencies_ms: list[float] | None = None,
    timeline: list[Window] | None = None,
    slos: list[SloResult] | None = None,
) -> LoadReport:
    sent = int(rate * 10)
    hist = histogram_of(latencies_ms) if latencies_ms is not None else None
    return LoadReport(
        scenario="support-flow",
        target="nats triage",
        started_at=1_790_000_000.0,
        seconds=10.0,
        warmup_s=1.0,
        arrival=f"constant {rate:g}/s",
        asked_rate=rate,
        achieved_rate=rate,
        saturated=False,
        sent=sent,
        completed=sent - errors - lost,
        errors=errors,
        lost=lost,
        duplicated=0,
        dead_lettered=0,
        latency_ms={"p50": p50, "p90": p99 / 2, "p99": p99, "p99.9": p999, "max": p999 * 2},
        timeline=timeline or [],
        roles=[
            RoleShare(
                role="triage",
                hops=sent,
                queue_ms_p50=0.5,
                handle_ms_p50=1.0,
                queue_ms_p99=2.0,
                handle_ms_p99=3.0,
                share=0.25,
            ),
            RoleShare(
                role="worker",
                hops=sent,
                queue_ms_p50=1.0,
                handle_ms_p50=worker_handle,
                queue_ms_p99=5.0,
                handle_ms_p99=worker_handle * 3,
                share=0.6,
            ),
        ],
        slos=slos or [],
        histogram=hist.encode().decode() if hist is not None else "",
    )


def row(text: str, figure: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {figure} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_worse_run_is_worse_figure_by_figure() -> None:
    a = make_report()
    b = make_report(p99=30.0, errors=60, lost=2, worker_handle=3.0)

    text, worse = compare_reports(a, b)

    assert worse is True
    assert row(text, "latency p99") == ["latency p99", "20.00 ms", "30.00 ms", "+10.00 ms (+50.0%)",
                                        "**worse**"]  # fmt: skip
    assert row(text, "error rate")[1:] == ["0.20%", "1.20%", "+1.00 points (+500.0%)", "**worse**"]
    assert row(text, "lost")[1:] == ["0", "2", "+2 (new)", "**worse**"]
    assert row(text, "worker handle p50")[-1] == "**worse**"
    assert row(text, "triage handle p50")[-1] == "same"
    assert row(text, "latency p50")[-1] == "same"
    assert row(text, "achieved rate")[-1] == "same"
    assert "Overall: **worse** (latency p99, error rate, lost, worker handle p50)." in text


def test_the_same_run_the_other_way_round_is_better() -> None:
    a = make_report(p99=30.0, errors=60, lost=2, worker_handle=3.0)
    b = make_report()

    text, worse = compare_reports(a, b)

    assert worse is False
    assert row(text, "latency p99")[-1] == "better"
    assert row(text, "lost")[1:] == ["2", "0", "-2 (-100.0%)", "better"]
    assert "Overall: **better** (latency p99, error rate, lost, worker handle p50)." in text


def test_changes_within_the_noise_bands_are_the_same() -> None:
    a = make_report(p50=0.5)
    # 4% less throughput (band 5%), p50 up 16% but by 0.08 ms (under the 0.1 ms floor), 9%
    # slower p99 and p99.9 (band 10%), 0.05 points more errors (band 0.1 point).
    b = make_report(rate=480.0, p50=0.58, p99=21.8, p999=43.6, errors=12)

    text, worse = compare_reports(a, b)

    assert worse is False
    for figure in ("achieved rate", "latency p50", "latency p99", "latency p99.9", "error rate"):
        assert row(text, figure)[-1] == "same", figure
    assert row(text, "lost")[1:] == ["0", "0", "0", "same"]
    assert "Overall: **the same** within the noise bands." in text
    assert "achieved rate 5%; latencies 10% or 0.1 ms" in text
    assert "The runs asked for different loads: A constant 500/s, B constant 480/s." in text


def test_less_throughput_beyond_the_band_is_worse() -> None:
    text, worse = compare_reports(make_report(), make_report(rate=450.0))

    assert worse is True
    assert row(text, "achieved rate")[1:] == ["500.0/s", "450.0/s", "-50.0/s (-10.0%)", "**worse**"]


def test_merged_histograms_give_the_percentiles_of_all_latencies_together() -> None:
    rng = random.Random(16)
    fast = [rng.lognormvariate(1.0, 0.4) for _ in range(20_000)]  # around 3 ms
    slow = [rng.lognormvariate(3.5, 0.6) for _ in range(5_000)]  # around 33 ms, a long tail
    direct = histogram_of(fast + slow)

    merged = merge_reports(
        [make_report(latencies_ms=fast, errors=3), make_report(latencies_ms=slow, errors=4)]
    )

    for key in ("p50", "p90", "p99", "p99.9"):
        expected = direct.get_value_at_percentile(float(key[1:])) / 1000.0
        assert merged.latency_ms[key] == pytest.approx(expected), key
    assert merged.latency_ms["max"] == pytest.approx(direct.get_max_value() / 1000.0)
    assert merged.latency_ms["mean"] == pytest.approx(direct.get_mean_value() / 1000.0)
    # Not what either process saw alone: the union's p99 sits inside the slow one's range.
    assert merged.latency_ms["p50"] < 5.0 < 20.0 < merged.latency_ms["p99"]
    again = HdrHistogram.decode(merged.histogram)
    assert again.get_total_count() == len(fast) + len(slow)


def test_merged_counts_timelines_roles_and_objectives() -> None:
    window = Window(t=0.0, sent=500, completed=499, errors=1, p50_ms=4.0, p99_ms=9.0)
    a = make_report(
        errors=3,
        lost=0,
        latencies_ms=[5.0] * 99 + [60.0],
        timeline=[window, msgspec.structs.replace(window, t=1.0, rss_mb={"gen-0": 50.0})],
        slos=[
            SloResult(name="p99_ms", limit=50.0, value=5.0, ok=True),
            SloResult(name="no_loss", limit=0.0, value=0.0, ok=True),
        ],
    )
    b = make_report(
        errors=4,
        lost=1,
        worker_handle=4.0,
        latencies_ms=[5.0] * 97 + [60.0] * 3,
        timeline=[msgspec.structs.replace(window, t=1.0, p99_ms=30.0, rss_mb={"gen-1": 70.0})],
        slos=[
            SloResult(name="p99_ms", limit=50.0, value=60.0, ok=False),
            SloResult(name="no_loss", limit=0.0, value=1.0, ok=False),
        ],
    )

    merged = merge_reports([a, b])

    assert (merged.sent, merged.errors, merged.lost) == (10_000, 7, 1)
    assert merged.completed == a.completed + b.completed
    assert merged.achieved_rate == 1000.0
    assert merged.asked_rate == 1000.0
    assert merged.arrival == "2 x constant 500/s"
    assert [(w.t, w.sent, w.p99_ms, w.rss_mb) for w in merged.timeline] == [
        (0.0, 500, 9.0, {}),
        (1.0, 1000, 30.0, {"gen-0": 50.0, "gen-1": 70.0}),
    ]
    worker = next(r for r in merged.roles if r.role == "worker")
    assert worker.hops == 10_000
    assert worker.handle_ms_p50 == pytest.approx(3.0)
    assert worker.handle_ms_p99 == pytest.approx(12.0)
    # 4 of 200 latencies are 60 ms: the union's p99 is 60 ms, over the 50 ms limit.
    slos = {s.name: s for s in merged.slos}
    assert slos["p99_ms"].value == pytest.approx(60.0, rel=1e-3)
    assert slos["p99_ms"].ok is False
    assert (slos["no_loss"].value, slos["no_loss"].ok) == (1.0, False)
    assert merged.verdict == "fail"


def test_merged_objectives_can_pass_where_one_process_alone_failed() -> None:
    # One process saw 2 slow requests of 100 (p99 60 ms), the other none of 300: together
    # 2 of 400 are slow, and the union's p99 is 5 ms.
    slo = [SloResult(name="p99_ms", limit=50.0, value=60.0, ok=False)]
    a = make_report(latencies_ms=[5.0] * 98 + [60.0] * 2, slos=slo)
    b = make_report(latencies_ms=[5.0] * 300, slos=[msgspec.structs.replace(slo[0], ok=True)])

    merged = merge_reports([a, b])

    assert merged.slos[0].value == pytest.approx(5.0, rel=1e-3)
    assert merged.slos[0].ok is True
    assert merged.verdict == "pass"


def test_without_histograms_the_merged_percentiles_are_an_upper_bound() -> None:
    merged = merge_reports([make_report(p99=20.0), make_report(p99=35.0, p50=3.0)])

    assert merged.latency_ms["p99"] == 35.0
    assert merged.latency_ms["p50"] == 4.0
    assert merged.histogram == ""


def test_merge_refuses_nothing_and_a_broken_histogram() -> None:
    with pytest.raises(ValueError, match="at least one"):
        merge_reports([])
    broken = msgspec.structs.replace(make_report(), histogram="bm90IGEgaGlzdG9ncmFt")
    with pytest.raises(ValueError, match="not an encoded HdrHistogram"):
        merge_reports([broken, make_report(latencies_ms=[1.0])])


def test_merge_without_hdrhistogram_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hdrh.histogram", None)
    reports = [make_report(latencies_ms=[1.0]), make_report(latencies_ms=[2.0])]

    with pytest.raises(ConfigError, match=r"jetmesh\[load\]"):
        merge_reports(reports)


def test_a_limit_fails_b_only_when_its_figure_passes_the_ratio() -> None:
    a = make_report(p99=20.0, errors=0)
    # twice A's p99 exactly holds a 2x limit; errors (worse by the bands) do not count then
    held, fails = compare_reports(a, make_report(p99=40.0, errors=60), limits={"p99": 2.0})
    passed, fails_too = compare_reports(a, make_report(p99=40.2), limits={"latency p99": 2.0})

    assert fails is False
    assert "Overall: **worse** (latency p99, error rate)." in held
    assert row(held, "latency p99 <= 2x A") == ["latency p99 <= 2x A", "20.00 ms", "40.00 ms",
                                                "2.00", "ok"]  # fmt: skip
    assert "Limits: B passes, every limit held" in held
    assert fails_too is True
    assert row(passed, "latency p99 <= 2x A")[-2:] == ["2.01", "**exceeded**"]
    assert "Limits: **B fails** (latency p99 over 2x A)." in passed


def test_a_limit_on_a_count_that_was_zero_fails_on_any() -> None:
    text, fails = compare_reports(make_report(), make_report(lost=1), limits={"lost": 10.0})

    assert fails is True
    assert row(text, "lost <= 10x A")[-2:] == ["new", "**exceeded**"]
    _, fails = compare_reports(make_report(), make_report(), limits={"worker handle p50": 1.0})
    assert fails is False


def test_limits_are_parsed_and_a_wrong_one_is_refused() -> None:
    assert parse_limit("p99=2.0") == ("p99", 2.0)
    assert parse_limit(" worker handle p50 = 1.5") == ("worker handle p50", 1.5)
    for wrong in ("p99", "=2", "p99=0", "p99=-1", "p99=x", "p99=inf"):
        with pytest.raises(ConfigError, match="limit"):
            parse_limit(wrong)
    with pytest.raises(ConfigError, match=r"no such figure .*latency p99"):
        compare_reports(make_report(), make_report(), limits={"p98": 2.0})
