"""The flows benchmark's CPU split: this process and its children, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from loadtest.cpu_split import (
    cpu_seconds,
    cpu_times,
    format_per_item,
    format_split,
    machine_times,
    split,
    used,
)

BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_busy_child_counts_as_an_agent_and_this_process_as_the_driver() -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY + "\ntime.sleep(5)"])
    try:
        before, started = cpu_times(), time.monotonic()
        assert before[os.getpid()][0] == "driver"
        while (used := cpu_times().get(child.pid, ("", 0.0))[1]) < 0.3:
            assert time.monotonic() - started < 20, f"the child used {used} s"
            time.sleep(0.05)
        after = cpu_times()
        assert after[child.pid][0] == "agents"
        shares = split(before, after, time.monotonic() - started)
    finally:
        child.kill()
        child.wait()
    assert shares["agents"] > 0.0
    assert "driver" in shares
    busy = sum(share for role, share in shares.items() if role != "idle")
    assert shares["idle"] == pytest.approx(max(0.0, 1.0 - busy))


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_one_process_cpu_seconds_and_a_gone_one() -> None:
    """What the gateway benchmark reads of its uvicorn process."""
    child = subprocess.Popen([sys.executable, "-c", BUSY])
    child.wait()  # reaped: its pid is gone
    with pytest.raises(ProcessLookupError):
        cpu_seconds(child.pid)
    mine = cpu_seconds(os.getpid())
    assert mine == pytest.approx(cpu_times()[os.getpid()][1], abs=0.05)
    assert mine > 0.0


def test_shares_are_of_every_core_and_idle_is_the_rest() -> None:
    cores = os.cpu_count() or 1
    before = {1: ("driver", 1.0), 2: ("nats-server", 5.0), 3: ("agents", 0.0)}
    after = {1: ("driver", 1.5), 2: ("nats-server", 6.0), 3: ("agents", 2.0), 4: ("agents", 0.5)}
    shares = split(before, after, wall_s=10.0)
    assert shares["agents"] == pytest.approx(2.5 / (10 * cores))
    assert shares["nats-server"] == pytest.approx(1.0 / (10 * cores))
    assert shares["driver"] == pytest.approx(0.5 / (10 * cores))
    assert shares["idle"] == pytest.approx(1 - 4.0 / (10 * cores))
    assert next(iter(shares)) == "agents", "the largest first"
    assert format_split(shares).startswith("agents ")
    assert format_split({}) == "not measured (no /proc)"


def test_used_seconds_by_role_and_the_cost_of_one_item() -> None:
    before = {1: ("driver", 1.0), 2: ("nats-server", 5.0), 3: ("agents", 0.0)}
    after = {1: ("driver", 1.5), 2: ("nats-server", 6.0), 3: ("agents", 2.0), 4: ("agents", 0.5)}
    seconds = used(before, after)
    assert seconds == {"agents": 2.5, "nats-server": 1.0, "driver": 0.5}
    assert next(iter(seconds)) == "agents", "the largest first"
    line = format_per_item(seconds, items=100)  # 40 ms an item
    assert line.startswith("40.0 ms (agents 25.0, nats-server 10.0, driver 5.0)")
    cores = os.cpu_count() or 1
    assert line.endswith(f"the cores hold {25 * cores:,} a second at that cost")
    assert format_per_item({}, items=100) == "not measured (no /proc)"
    assert format_per_item(seconds, items=0) == "not measured (no /proc)"


def test_what_the_rest_of_the_machine_used_is_other_not_idle() -> None:
    cores = os.cpu_count() or 1
    before = {1: ("driver", 1.0), 2: ("agents", 0.0)}
    after = {1: ("driver", 1.5), 2: ("agents", 2.0)}
    capacity = 10.0 * cores
    machine = ((100.0, 500.0), (100.0 + 4.0, 500.0 + capacity - 4.0))  # 4 s busy in all
    shares = split(before, after, wall_s=10.0, machine=machine)
    assert shares["other"] == pytest.approx(1.5 / capacity)  # 4 busy - 2.5 ours
    assert shares["idle"] == pytest.approx(1 - 4.0 / capacity)
    assert list(shares)[-2:] == ["other", "idle"]
    # a machine reading below what our processes used (its ticks round down): no other
    assert split(before, after, wall_s=10.0, machine=((0.0, 0.0), (2.0, 9.0)))["other"] == 0.0
    assert "other" not in split(before, after, wall_s=10.0)  # not measured: all is idle


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_the_machine_busy_and_idle_seconds_grow() -> None:
    busy, idle = machine_times()
    child = subprocess.Popen([sys.executable, "-c", BUSY])
    child.wait()
    later_busy, later_idle = machine_times()
    assert busy > 0.0
    assert idle > 0.0
    assert later_busy - busy >= 0.2  # the child's 0.3 s of CPU, give or take a tick
    assert later_idle >= idle
