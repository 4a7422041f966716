"""Load testing as a product: scenario files, open-loop arrival models, a driver that
sends through the mesh's ingress (``nats``) or the HTTP gateway (``http``), and a
``report.json`` with latencies, a per-second timeline and SLO verdicts.

- :mod:`.scenario`: a scenario file (TOML) read and validated (:func:`load_scenario`).
- :mod:`.arrivals`: the arrival models' send times, scheduled before the run.
- :mod:`.driver`: the open (or closed) loop that sends and tallies (:func:`run_scenario`).
- :mod:`.doors`: the ways in, ``nats`` (an ingress role) and ``http`` (the gateway).
- :mod:`.echo`: an echo agent to load (``jetmesh run jetmesh.load.echo:agent``).
- :mod:`.shapes`: small agents with no model in two shapes of flow, a fan-out
  (``fanout``, ``fanout_worker``) and a critic loop (``loop_editor``, ``loop_writer``,
  ``loop_critic``), one module per role (the ``fan-out`` and ``critic-loop`` scenarios).
- :mod:`.report`: :class:`LoadReport` and its parts, written and read as JSON.
- :mod:`.breakdown`: each role's queueing, handling and share of the end-to-end time,
  from the event log (:func:`role_shares`): which agent is the bottleneck.
- :mod:`.render`: the report as Markdown (:func:`markdown`) and PNG plots (:func:`plots`).
- :mod:`.fleet`: the mesh a run launches itself (``[mesh]``): embedded servers and a
  process per replica, stopped after (:func:`launched`, :class:`Fleet`).
- :mod:`.faults`: faults on a schedule (``[[faults]]``): kill a replica, restart a
  server, pause a process (:func:`play_faults`).
- :mod:`.audit`: a scenario's ``[audit]``, the mesh's own count of what happened after
  the load (effects, runs per task), judged against bounds (:func:`run_audit`), once the
  tasks have settled (:func:`wait_settled`).
- :mod:`.floor`: the bare nats-py floor a run's speed is measured against
  (:func:`measure_floor`; a scenario's ``[floor]``), and the run's ratio to it
  (:func:`floor_ratio`).
- :mod:`.runner`: a whole run, mesh, load and faults (:func:`run_load`).
- :mod:`.compare`: two runs compared figure by figure (:func:`compare_reports`), and the
  reports of several generator processes merged into one (:func:`merge_reports`).
- :mod:`.generators`: several generator processes for one run (:func:`run_generators`),
  each its share of the scenario (:func:`part_of`), their reports merged.
- :mod:`.memory`: each process's resident memory per window (:class:`RssWatch`) and the
  soak's verdict, memory and p99 flat (:func:`soak_slos`).

``jetmesh load`` (:mod:`jetmesh.cli.load`) is the command line over these names. The
extra libraries (hdrhistogram, matplotlib) come with the ``load`` extra
(``pip install 'jetmesh[load]'``) and are imported only where needed.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> report = read_report(Path("out/report.json"))  # doctest: +SKIP
    >>> report.latency_ms["p99"], report.verdict        # doctest: +SKIP
    (12.4, 'pass')
"""

from .arrivals import mean_rate, schedule
from .audit import (
    AuditCheck,
    AuditRun,
    admin_jetstream,
    load_check,
    run_audit,
    wait_settled,
    with_audit,
)
from .breakdown import role_shares, shares_from_trees
from .compare import compare_reports, merge_reports
from .doors import Door, http_door, nats_door, open_door
from .driver import LAG_BOUND_S, Progress, Send, lag_bound, new_histogram, run_scenario, slo_results
from .faults import Fault, KillFault, PauseFault, RestartServerFault, play_faults
from .fleet import Fleet, MeshSpec, launched
from .floor import DurableSetup, floor_ratio, measure_floor
from .generators import GeneratorRun, merge_generators, part_of, run_generators, suggested_processes
from .memory import RssWatch, sample_every, soak_slos, with_soak
from .render import bounds, markdown, plots
from .report import (
    AuditFigure,
    FaultRecord,
    FloorResult,
    LoadReport,
    RoleShare,
    SloResult,
    Window,
    read_report,
    write_report,
)
from .runner import check_runnable, run_load
from .scenario import (
    Arrival,
    Audit,
    ClosedArrival,
    ConstantArrival,
    Floor,
    HttpTarget,
    NatsTarget,
    Payload,
    PoissonArrival,
    RampArrival,
    Scenario,
    Slo,
    StepsArrival,
    load_scenario,
)

__all__ = [
    "LAG_BOUND_S",
    "Arrival",
    "Audit",
    "AuditCheck",
    "AuditFigure",
    "AuditRun",
    "ClosedArrival",
    "ConstantArrival",
    "Door",
    "DurableSetup",
    "Fault",
    "FaultRecord",
    "Fleet",
    "Floor",
    "FloorResult",
    "GeneratorRun",
    "HttpTarget",
    "KillFault",
    "LoadReport",
    "MeshSpec",
    "NatsTarget",
    "PauseFault",
    "Payload",
    "PoissonArrival",
    "Progress",
    "RampArrival",
    "RestartServerFault",
    "RoleShare",
    "RssWatch",
    "Scenario",
    "Send",
    "Slo",
    "SloResult",
    "StepsArrival",
    "Window",
    "admin_jetstream",
    "bounds",
    "check_runnable",
    "compare_reports",
    "floor_ratio",
    "http_door",
    "lag_bound",
    "launched",
    "load_check",
    "load_scenario",
    "markdown",
    "mean_rate",
    "measure_floor",
    "merge_generators",
    "merge_reports",
    "nats_door",
    "new_histogram",
    "open_door",
    "part_of",
    "play_faults",
    "plots",
    "read_report",
    "role_shares",
    "run_audit",
    "run_generators",
    "run_load",
    "run_scenario",
    "sample_every",
    "schedule",
    "shares_from_trees",
    "slo_results",
    "soak_slos",
    "suggested_processes",
    "wait_settled",
    "with_audit",
    "with_soak",
    "write_report",
]
