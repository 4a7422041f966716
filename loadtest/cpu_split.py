"""Where a benchmark's CPU went: this process and its children (the servers it started,
the agent processes), read from ``/proc`` before and after a phase.

    before, machine = cpu_times(), machine_times()
    ...  # the phase
    after = cpu_times()
    print(format_split(split(before, after, wall_s, machine=(machine, machine_times()))))
    print(format_per_item(used(before, after), items))

Linux only; elsewhere :func:`cpu_times` is empty and the split says so.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

PROC = Path("/proc")
SERVERS = ("nats-server", "redis-server")
"""Children counted by their own name; every other child is an agent process."""


def _stat(pid: str) -> tuple[int, str, float] | None:
    """(parent pid, command name, CPU seconds used) of ``pid``, None if it is gone."""
    try:
        raw = (PROC / pid / "stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return int(fields[1]), name, ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far.

    Raises:
        ProcessLookupError: ``pid`` is gone (or there is no /proc).
    """
    stat = _stat(str(pid))
    if stat is None:
        raise ProcessLookupError(pid)
    return stat[2]


def cpu_times() -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by this process and each of its children, by pid, with the
    role each counts under: ``driver``, a server's name, or ``agents``."""
    me = os.getpid()
    out: dict[int, tuple[str, float]] = {}
    if not PROC.is_dir():
        return out
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or (stat := _stat(entry.name)) is None:
            continue
        parent, name, used = stat
        pid = int(entry.name)
        if pid == me:
            out[pid] = ("driver", used)
        elif parent == me:
            out[pid] = (name if name in SERVERS else "agents", used)
    return out


def used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each role used between two readings, the largest first; a process that
    ended meanwhile is not counted."""
    seconds: defaultdict[str, float] = defaultdict(float)
    for pid, (role, total) in after.items():
        seconds[role] += max(0.0, total - before.get(pid, (role, 0.0))[1])
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))


def machine_times() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy and idle so far, every core summed
    (``/proc/stat``; waiting on the disk counts as idle; (0, 0) without it). Busy includes
    what no process is charged for: interrupts and soft interrupts (loopback networking)
    and the kernel's own workers (block I/O, the file system's journal)."""
    try:
        with (PROC / "stat").open() as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, (idle + iowait) / tick


def split(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    wall_s: float,
    *,
    machine: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Each role's share of the machine's CPU time over ``wall_s`` seconds, and ``idle``:
    what nobody used. With ``machine`` (:func:`machine_times` before and after), also
    ``other``: what the rest of the machine used meanwhile (the kernel's interrupts and
    workers, other processes), which is otherwise counted as idle. A process that ended
    meanwhile is not counted."""
    capacity = wall_s * (os.cpu_count() or 1)
    if capacity <= 0 or not after:
        return {}
    shares = {role: seconds / capacity for role, seconds in used(before, after).items()}
    ours = sum(shares.values())
    if machine is not None and machine[1][0] > 0:
        (busy_before, _), (busy_after, _) = machine
        shares["other"] = max(0.0, (busy_after - busy_before) / capacity - ours)
    shares["idle"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def format_per_item(seconds: dict[str, float], items: int) -> str:
    """The CPU one item (a workflow, a request) cost, in all and by role: ``21.4 ms
    (agents 13.1, nats-server 5.3, ...)``; and the rate the machine's cores would hold at
    that cost, were nothing else running."""
    if not seconds or items <= 0:
        return "not measured (no /proc)"
    total_ms = 1000 * sum(seconds.values()) / items
    roles = ", ".join(f"{role} {1000 * s / items:.1f}" for role, s in seconds.items())
    bound = 1000 * (os.cpu_count() or 1) / total_ms if total_ms else float("inf")
    return f"{total_ms:.1f} ms ({roles}); the cores hold {bound:,.0f} a second at that cost"


def format_split(shares: dict[str, float]) -> str:
    """``agents 71%, nats-server 22%, ...`` (or why there is nothing to show)."""
    if not shares:
        return "not measured (no /proc)"
    return ", ".join(f"{role} {share:.0%}" for role, share in shares.items())
