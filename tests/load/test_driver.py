"""The driver's timing logic against fake targets in this process whose delays the test
controls: the open loop shows a stall in every request due during it, a closed loop hides
it unless corrected for coordinated omission, saturation is the generator falling behind,
and the objectives give the verdict. Margins are wide: the numbers asserted differ by
tens of times between the cases."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from jetmesh import CallFailed
from jetmesh.load import Scenario, run_scenario, schedule, slo_results
from jetmesh.load.driver import _Tally
from jetmesh.load.scenario import ConstantArrival, Slo

DELAY_S = 0.005
STALL_AT_S, STALL_S = 1.0, 0.5


def scenario(arrival: dict[str, Any], seconds: float = 3.0, **fields: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "t",
            "agent": "fake",
            "payload": {"template": '{"n": {n}}'},
            "arrival": arrival,
            "seconds": seconds,
            **fields,
        }
    )


class Stalling:
    """Answers in 5 ms, except that everything arriving in [1.0, 1.5) s after it was
    made waits until 1.5 s: a 500 ms stall at a known time."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    async def __call__(self, body: bytes) -> None:
        now = time.perf_counter() - self.t0
        if STALL_AT_S <= now < STALL_AT_S + STALL_S:
            await asyncio.sleep(STALL_AT_S + STALL_S - now)
        await asyncio.sleep(DELAY_S)


async def test_the_open_loop_shows_the_stall_in_the_requests_due_during_it() -> None:
    report = await run_scenario(scenario({"model": "constant", "rate": 100}), Stalling())
    assert report.sent == 300
    assert report.completed == 300
    assert report.latency_ms["p99"] >= 300  # the ~50 requests due during the stall waited
    assert report.latency_ms["p50"] < 100
    stalled = report.timeline[1]
    assert stalled.p99_ms >= 300
    # The sender kept its schedule: it never waits for replies, so the stall is not in its
    # lag (a sender that waited would lag by the 500 ms of the stall). Not that it never
    # lagged 50 ms (the bound of `saturated`): a busy machine may hold the loop that long.
    assert report.lag_p99_ms < STALL_S * 1000 / 2


async def test_a_closed_loop_hides_the_stall_without_correction() -> None:
    report = await run_scenario(scenario({"model": "closed", "concurrency": 1}), Stalling())
    assert report.completed >= 150  # enough samples that one stalled request is under 1%
    assert report.latency_ms["max"] >= 300  # the stall happened...
    assert report.latency_ms["p99"] < 100  # ...and p99 does not show it


async def test_a_closed_loop_shows_the_stall_with_coordinated_omission_correction() -> None:
    arrival = {"model": "closed", "concurrency": 1, "expected_interval_ms": 10}
    report = await run_scenario(scenario(arrival), Stalling())
    assert report.completed >= 150
    assert report.latency_ms["p99"] >= 300
    assert report.arrival == "closed 1"
    assert report.asked_rate is None


async def test_waiting_at_the_in_flight_cap_counts_in_the_latency() -> None:
    async def slow(body: bytes) -> None:
        await asyncio.sleep(0.05)

    one_at_a_time = scenario({"model": "constant", "rate": 40}, seconds=1.0, max_in_flight=1)
    report = await run_scenario(one_at_a_time, slow)
    assert report.completed == 40
    # 40 requests of 50 ms one after another take 2 s; the last was due at 0.975 s
    assert report.latency_ms["max"] >= 800
    assert report.lag_p99_ms < 250  # the wait for room is the request's, not the sender's


def cpu_bound(body: bytes) -> Any:
    """Holds the event loop 4 ms per request (at most ~250 sends a second)."""
    time.sleep(0.004)
    return asyncio.sleep(0)


async def test_saturation_is_the_generator_falling_behind_its_schedule() -> None:
    report = await run_scenario(scenario({"model": "constant", "rate": 500}, 1.0), cpu_bound)
    assert report.saturated
    assert report.lag_p99_ms > 250
    assert report.asked_rate == 500


async def test_a_comfortable_rate_keeps_its_schedule() -> None:
    report = await run_scenario(scenario({"model": "constant", "rate": 20}, 2.0), cpu_bound)
    assert report.lag_p99_ms < 250  # at 500/s it falls seconds behind (the test above)
    assert report.achieved_rate == 20
    assert report.sent == 40


async def test_the_verdict_fails_on_errors_and_lost_requests() -> None:
    async def flaky(body: bytes) -> None:
        n = int(body.decode().split(":")[1].rstrip("}"))
        if n % 10 == 1:
            raise CallFailed("fake", "Boom", "went to the dead-letter stream", "max-deliveries")
        if n % 10 == 2:
            await asyncio.sleep(10)  # never answers within the timeout: lost
        await asyncio.sleep(0.001)

    slo = {"p99_ms": 1000, "error_rate": 0.05, "no_loss": True}
    s = scenario({"model": "constant", "rate": 50}, 1.0, slo=slo, timeout_s=0.3)
    report = await run_scenario(s, flaky)
    assert (report.sent, report.completed, report.errors, report.lost) == (50, 40, 5, 5)
    assert report.dead_lettered == 5
    by_name = {r.name: r for r in report.slos}
    assert by_name["p99_ms"].ok
    assert not by_name["error_rate"].ok
    assert by_name["error_rate"].value == pytest.approx(0.2)
    assert not by_name["no_loss"].ok
    assert report.verdict == "fail"


async def test_the_verdict_passes_when_every_objective_holds() -> None:
    async def fast(body: bytes) -> None:
        await asyncio.sleep(0.001)

    s = scenario({"model": "poisson", "rate": 100}, 1.0, slo={"p99_ms": 500, "no_loss": True})
    report = await run_scenario(s, fast)
    assert report.verdict == "pass"
    assert [r.name for r in report.slos] == ["p99_ms", "no_loss"]
    assert report.sent == len(schedule(s.arrival, 1.0))
    assert sum(w.sent for w in report.timeline) == report.sent
    assert report.histogram  # encoded, so runs can be merged


def test_slo_results_compare_each_limit() -> None:
    latency = {"p50": 4.0, "p99": 60.0}
    results = slo_results(Slo(p50_ms=5, p99_ms=50), latency, sent=100, failed=0, lost=0)
    assert [(r.name, r.ok) for r in results] == [("p99_ms", False), ("p50_ms", True)]
    assert slo_results(Slo(), latency, sent=100, failed=3, lost=3) == []


def test_a_constant_schedule_is_evenly_spaced() -> None:
    times = schedule(ConstantArrival(model="constant", rate=10), 1.5)
    assert len(times) == 15
    assert times[:3] == pytest.approx([0.0, 0.1, 0.2])


async def test_the_warm_up_is_not_in_the_numbers() -> None:
    calls = 0

    async def counting(body: bytes) -> None:
        nonlocal calls
        calls += 1

    report = await run_scenario(
        scenario({"model": "constant", "rate": 20}, 1.0, warmup_s=0.5), counting
    )
    assert calls == 30
    assert report.sent == 20
    assert report.completed == 20


def test_a_window_that_is_over_keeps_its_quantiles_not_its_latencies() -> None:
    tally = _Tally(seconds=100)
    for second in range(100):  # 200 answers a second: 10 ms, and three of 500 ms
        for n in range(200):
            tally.on_done(second + n / 200, 0.5 if n in (50, 100, 150) else 0.010, None)
    kept = sum(len(w.latencies_ms) for w in tally.windows)
    assert kept == 200  # the last window's, still open: not the run's 20,000
    timeline = tally.timeline()
    assert len(timeline) == 100
    assert all(w.p50_ms == pytest.approx(10.0) for w in timeline)
    assert all(w.p99_ms == pytest.approx(500.0) for w in timeline)  # 3 of 200 above p98.5
    assert tally.completed == 20_000
    assert sum(w.completed for w in timeline) == 20_000
    assert tally.latency_ms()["max"] == pytest.approx(500.0, rel=0.01)
    assert sum(len(w.latencies_ms) for w in tally.windows) == 0
