"""The report of one load run: what was asked, what was sent and answered, how fast, and
whether each service-level objective held.

``jetmesh load run`` writes it as ``report.json``; the Markdown report, the plots, the
comparison of two runs and the per-role breakdown all read it back. New fields get
defaults, so an older report still reads.

Example:
    >>> write_report(Path("out/report.json"), report)  # doctest: +SKIP
    >>> read_report(Path("out/report.json")).verdict   # doctest: +SKIP
    'pass'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "AuditFigure",
    "FaultRecord",
    "FloorResult",
    "LoadReport",
    "RoleShare",
    "SloResult",
    "Window",
    "read_report",
    "write_report",
]


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """One second of the run's timeline."""

    t: float
    """Seconds since the run started (the window's start)."""
    sent: int
    """Requests sent in this window."""
    completed: int
    """Requests answered (without error) in this window."""
    errors: int
    """Requests answered with an error in this window."""
    p50_ms: float
    """Median latency of the requests completed in this window, in milliseconds."""
    p99_ms: float
    """99th-percentile latency of the requests completed in this window, in milliseconds."""
    rss_mb: dict[str, float] = msgspec.field(default_factory=dict)
    """Resident memory by process name, in MiB (filled by soak runs; else empty)."""


class RoleShare(msgspec.Struct, frozen=True, kw_only=True):
    """Where the time went for one role of the flow under test."""

    role: str
    """The role (agent) name."""
    hops: int
    """How many deliveries to this role were measured."""
    queue_ms_p50: float
    """Median time a task waited before this role started handling it, in milliseconds."""
    handle_ms_p50: float
    """Median time this role spent handling a task, in milliseconds."""
    queue_ms_p99: float
    """99th-percentile queue time, in milliseconds."""
    handle_ms_p99: float
    """99th-percentile handling time, in milliseconds."""
    share: float
    """This role's share (0..1) of the end-to-end latency."""


class SloResult(msgspec.Struct, frozen=True, kw_only=True):
    """One service-level objective and whether the run met it."""

    name: str
    """The objective: ``p99_ms``, ``p50_ms``, ``error_rate`` or ``no_loss``."""
    limit: float
    """The limit the scenario set (for ``no_loss``: 0 lost)."""
    value: float
    """What the run measured."""
    ok: bool
    """Whether ``value`` is within ``limit``."""


class FaultRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One fault the scenario scheduled, and what became of it."""

    at: float
    """When it struck, seconds since the measured part began."""
    kind: str
    """``kill``, ``restart-server`` or ``pause``."""
    target: str
    """What it struck: a process (``echo#1``, with its role) or a server (``nats``)."""
    done: bool
    """Whether it was carried out (False: ``detail`` says why not)."""
    detail: str = ""
    """What happened: the pid, the replacement, how long the server was down."""


class AuditFigure(msgspec.Struct, frozen=True, kw_only=True):
    """One figure the scenario's ``[audit]`` counted after the load (effects run, runs per
    task, payouts...), judged against its bounds when it has any."""

    name: str
    """What was counted, e.g. ``effects duplicated``."""
    value: float
    """The count."""
    most: float | None = None
    """The largest value that passes (None: no upper bound)."""
    least: float | None = None
    """The smallest value that passes (None: no lower bound)."""
    detail: str = ""
    """More words: which ones, from where."""

    @property
    def ok(self) -> bool:
        """Whether ``value`` is within its bounds (a figure with none always is)."""
        if self.most is not None and self.value > self.most:
            return False
        return self.least is None or self.value >= self.least


class FloorResult(msgspec.Struct, frozen=True, kw_only=True):
    """A floor measured just before the load (``[floor]``): a bare nats-py request/reply
    between two processes on the run's NATS server (``kind`` ``request``), or the same
    stored hop as the mesh's done with nats-py alone (``durable``), the paces the mesh is
    measured against."""

    requests: int
    """Requests in the measured part (successes and errors)."""
    seconds: float
    """Wall time of the measured part, in seconds."""
    rate: float
    """Successful requests per second."""
    p50_ms: float
    """Median latency of the successful requests, in milliseconds."""
    p99_ms: float
    """99th-percentile latency, in milliseconds."""
    p999_ms: float = 0.0
    """99.9th-percentile latency, in milliseconds."""
    errors: int = 0
    """Requests that failed or were not answered in time."""
    concurrency: int = 64
    """Requests in flight at any time."""
    payload_bytes: int = 256
    """The size of each request and its reply, in bytes."""
    kind: Literal["request", "durable"] = "request"
    """Which floor: the bare request/reply, or the bare durable hop."""
    stored: int = 0
    """Durable: the messages the floor's streams held before they were deleted (a task and
    an event for each request answered, the warm-up's included); 0 for the request floor."""


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    """One load run, as ``report.json`` holds it."""

    scenario: str
    """The scenario's name."""
    target: str
    """The door and where: ``"nats <agent>"`` or ``"http <base-url> <agent>"``."""
    started_at: float
    """When the measured part of the run began (Unix seconds)."""
    seconds: float
    """How long requests were sent after the warm-up, in seconds."""
    warmup_s: float
    """Seconds of warm-up before measuring (its requests are not in the numbers)."""
    arrival: str
    """The arrival model, e.g. ``"constant 200/s"``, ``"poisson 200/s"``, ``"closed 16"``."""
    asked_rate: float | None
    """The mean rate the arrival model asked for, per second (``None`` for a closed loop)."""
    achieved_rate: float
    """Requests actually sent per second in the measured part."""
    saturated: bool
    """The generator could not send on schedule: its lag behind the schedule, p99, passed
    the bound; the latencies then understate what a real client would see."""
    lag_p99_ms: float = 0.0
    """The generator's lag behind its schedule, p99, in milliseconds (0 for a closed loop,
    which has no schedule)."""
    sent: int
    """Requests sent in the measured part."""
    completed: int
    """Requests answered without error."""
    errors: int
    """Requests answered with an error (or refused before sending)."""
    lost: int
    """Requests with no answer by their timeout or the end of the run."""
    duplicated: int
    """Replies for a request already answered."""
    dead_lettered: int
    """Tasks that went to the dead-letter stream: counted on the stream when the run
    started the servers, else errors whose reason says so."""
    latency_ms: dict[str, float]
    """Latency in milliseconds: ``p50``, ``p90``, ``p99``, ``p99.9``, ``max``, ``mean``. In
    an open loop each request's latency runs from its SCHEDULED send time."""
    timeline: list[Window]
    """One :class:`Window` per second of the measured part."""
    roles: list[RoleShare] = msgspec.field(default_factory=list)
    """Per-role queue and handling times (filled by the breakdown; else empty)."""
    slos: list[SloResult] = msgspec.field(default_factory=list)
    """Each objective of the scenario and whether it held."""
    verdict: Literal["pass", "fail"] = "pass"
    """``fail`` when any objective failed; else ``pass``."""
    histogram: str = ""
    """The latency HdrHistogram (microseconds), encoded (base64), so runs can be merged."""
    faults: list[FaultRecord] = msgspec.field(default_factory=list)
    """The faults the scenario scheduled, in order (empty without ``[[faults]]``)."""
    generators: int = 1
    """How many generator processes drove the run (their reports merged into this one)."""
    audit: list[AuditFigure] = msgspec.field(default_factory=list)
    """What the scenario's ``[audit]`` counted after the load (empty without one); a
    figure outside its bounds makes the verdict ``fail``."""
    floor: FloorResult | None = None
    """The bare nats-py request/reply floor measured just before the load (``[floor]``);
    None without one. The run's speed is reported as its completed requests per second over
    ``floor.rate``."""
    durable_floor: FloorResult | None = None
    """The bare durable hop measured just before the load (``[[floor]] kind =
    "durable"``); None without one."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LoadReport)


def write_report(path: Path, report: LoadReport) -> None:
    """Write ``report`` to ``path`` as JSON (indented, UTF-8), making its folder if needed.

    Args:
        path: Where to write, usually ``<out>/report.json``.
        report: The report.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(_encoder.encode(report), indent=2) + b"\n")


def read_report(path: Path) -> LoadReport:
    """Read a report written by :func:`write_report`.

    Args:
        path: The ``report.json`` file.

    Returns:
        The report.

    Raises:
        msgspec.ValidationError: The file is JSON but not a report.
        msgspec.DecodeError: The file is not JSON.
    """
    return _decoder.decode(path.read_bytes())
