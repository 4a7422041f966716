"""A whole load run: launch the scenario's ``[mesh]`` (:mod:`.fleet`), send its load
through its door (:mod:`.doors`, :mod:`.driver`) while its ``[[faults]]`` strike
(:mod:`.faults`), stop what was launched, and report what the faults cost. ``jetmesh load
run`` runs :func:`run_load`.

Example:
    >>> report = await run_load(scenario, MeshSettings())  # doctest: +SKIP
    >>> report.sent == report.completed + report.errors + report.lost  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import nats

from .._exceptions import ConfigError
from ..logins import nats_seed_file
from ..policy.servers import ADMIN
from ..settings import MeshSettings
from .audit import AuditRun, admin_jetstream, load_check, run_audit, with_audit
from .doors import open_door
from .driver import Progress, run_scenario
from .faults import KillFault, PauseFault, play_faults
from .fleet import Fleet, launched
from .floor import DurableSetup, measure_floor
from .report import AuditFigure, FloorResult, LoadReport
from .scenario import NatsTarget, Scenario

__all__ = ["check_runnable", "run_load"]


def _check_targets(scenario: Scenario, roles: list[str]) -> None:
    """Each fault names a role the mesh launches (or, for a pause, a server or process)."""
    for fault in scenario.faults:
        if isinstance(fault, KillFault):
            name = fault.role
        elif isinstance(fault, PauseFault) and fault.target not in ("nats", "redis"):
            name = fault.target.split("#", 1)[0]
        else:
            continue
        if name not in roles:
            raise ConfigError(
                f"scenario {scenario.name}: a {fault.kind} fault names {name!r}, "
                f"which the mesh does not launch (it launches {', '.join(roles)})"
            )


def check_runnable(scenario: Scenario) -> None:
    """What can be known wrong before anything starts: faults with no ``[mesh]``, embedded
    servers behind the HTTP door, a fault naming a role the mesh does not launch, the
    mesh package or the audit function not importable.

    Raises:
        ConfigError: naming what is wrong.
    """
    if scenario.faults and scenario.mesh is None:
        raise ConfigError(f"scenario {scenario.name}: faults need a [mesh] section")
    embedded = scenario.mesh is not None and scenario.mesh.embedded
    if embedded and not isinstance(scenario.target, NatsTarget):
        raise ConfigError(f"scenario {scenario.name}: embedded servers need door = 'nats'")
    if scenario.mesh is not None:
        roles = scenario.mesh.roles()  # imports a launched package
        if scenario.faults:
            _check_targets(scenario, roles)
    if scenario.audit is not None:
        load_check(scenario.audit)


async def _dead_letters(fleet: Fleet | None) -> int | None:
    """The dead-letter stream's message count, asked as the servers' admin: only on the
    servers the run started (None elsewhere; the stream not there yet: 0)."""
    if fleet is None or not fleet.embedded:
        return None
    async with admin_jetstream(fleet.settings) as js:
        try:
            info = await js.stream_info(fleet.settings.dlq_stream)
        except nats.js.errors.NotFoundError:
            return 0
        return int(info.state.messages)


async def _floors(scenario: Scenario, settings: MeshSettings | None) -> dict[str, FloorResult]:
    """The scenario's floors (``[floor]``, ``[[floor]]``) measured one after the other on the
    door's NATS server (the target's ``url``, else the settings'; of a cluster, its first
    node), as the admin where its seed is in the keys directory; the durable floor's streams
    with the mesh's tasks stream's replicas and de-duplication window. By kind."""
    if not scenario.floors:
        return {}
    s = settings or MeshSettings()
    target = scenario.target
    url = target.url if isinstance(target, NatsTarget) and target.url else s.nats_url
    url = url.split(",", 1)[0].strip()
    keys_dir = target.keys_dir if isinstance(target, NatsTarget) and target.keys_dir else None
    seed = nats_seed_file(keys_dir or s.resolved_keys_dir, ADMIN)
    durable = DurableSetup(
        replicas=s.tasks_replicas or s.stream_replicas,
        duplicate_window_s=s.duplicate_window_s,
        max_ack_pending=s.max_ack_pending,
    )
    seed_file = seed if seed.is_file() else None
    return {
        floor.kind: await measure_floor(url, floor, seed_file=seed_file, durable=durable)
        for floor in scenario.floors
    }


async def run_load(
    scenario: Scenario,
    settings: MeshSettings | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    on_launch: Callable[[Fleet], None] | None = None,
    log_dir: Path | None = None,
    **options: Any,
) -> LoadReport:
    """Launch the scenario's ``[mesh]`` (if any), send its load through its door while
    its faults strike, run its ``[audit]`` (if any) while the mesh is still up, stop what
    was launched, and report: the floor measured just before the load (``[floor]``), each
    role's share, the faults, ``dead_lettered`` from the dead-letter stream (on servers
    the run started), ``lost`` as what was sent and neither answered nor failed, and the
    audit's figures (a figure out of bounds fails the run).

    Args:
        scenario: The scenario.
        settings: The mesh settings (default: from the environment); the embedded
            servers' own replace them.
        progress: Called once a second with a snapshot.
        on_launch: Called with the launched fleet once it is ready (its pids, for a
            caller that checks nothing outlives the run).
        log_dir: Where the launched processes' logs are kept, one file per process
            (default: a temporary folder, removed with the run).
        **options: More options for :func:`~jetmesh.load.driver.run_scenario`.

    Raises:
        ConfigError: faults with no ``[mesh]``, the mesh did not start, or the audit
            function cannot be found.
        RuntimeError: a floor's responder process did not start (``[floor]``).
    """
    check_runnable(scenario)
    embedded = scenario.mesh is not None and scenario.mesh.embedded
    base = settings or MeshSettings()
    async with launched(scenario.mesh, base, log_dir) as fleet:
        if fleet is not None and on_launch is not None:
            on_launch(fleet)
        door_settings = fleet.settings if fleet is not None and fleet.embedded else settings
        dlq_before = await _dead_letters(fleet)
        floors = await _floors(scenario, door_settings)  # just before the load
        async with open_door(scenario, door_settings) as door:
            async with play_faults(scenario.faults, fleet, delay_s=scenario.warmup_s) as records:
                report = await run_scenario(
                    scenario,
                    door.send,
                    duplicates=door.duplicates,
                    progress=progress,
                    **options,
                )
            roles = await door.roles()
        dlq_after = await _dead_letters(fleet)
        changes: dict[str, object] = {
            "roles": roles,
            "faults": list(records),
            "lost": max(0, report.sent - report.completed - report.errors),
            "floor": floors.get("request"),
            "durable_floor": floors.get("durable"),
        }
        if dlq_before is not None and dlq_after is not None:
            changes["dead_lettered"] = dlq_after - dlq_before
        report = msgspec.structs.replace(report, **changes)
        figures: list[AuditFigure] = []
        if scenario.audit is not None:  # while the mesh is still up
            run = AuditRun(
                scenario=scenario,
                report=report,
                settings=door_settings,
                embedded=embedded,
                options=scenario.audit.options,
            )
            figures = await run_audit(scenario.audit, run)
    return with_audit(report, figures) if figures else report
