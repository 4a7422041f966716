"""A scenario's audit: after the load, and while the mesh is still up, a function of the
mesh under test counts what really happened (effects run, runs per task, payouts, tool
runs) and returns figures with bounds. A figure outside its bounds fails the run like an
objective: the harness counts requests, the audit counts what the mesh did with them.

    [audit]
    check = "mymesh.audit:count_refunds"     # package.module:function

    [audit.options]
    tolerance = 0

The function::

    async def count_refunds(run: AuditRun) -> list[AuditFigure]:
        paid = await read_payouts(run.settings)       # as the mesh's admin, say
        return [
            AuditFigure(name="orders paid", value=len(paid), least=run.report.completed),
            AuditFigure(name="orders paid twice", value=twice(paid), most=0),
        ]

Example:
    >>> figures = await run_audit(scenario.audit, run)  # doctest: +SKIP
    >>> with_audit(report, figures).verdict             # doctest: +SKIP
    'pass'
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext

from .._exceptions import ConfigError
from ..bus import connect
from ..bus.streams import UNAVAILABLE
from ..logins import admin_login
from ..settings import MeshSettings
from .report import AuditFigure, LoadReport
from .scenario import Audit, Scenario

__all__ = [
    "AuditCheck",
    "AuditRun",
    "admin_jetstream",
    "load_check",
    "run_audit",
    "wait_settled",
    "with_audit",
]

SETTLE_POLL_S = 0.2


@dataclass(frozen=True)
class AuditRun:
    """What an audit function is given."""

    scenario: Scenario
    """The scenario that ran."""
    report: LoadReport
    """The run's report so far (sent, completed, lost...; no audit yet)."""
    settings: MeshSettings | None
    """The mesh settings the load was sent with: the run's own servers' when it started
    them (``[mesh] embedded``; their admin login is :func:`jetmesh.logins.admin_login`),
    else the environment's; None through the HTTP door without a mesh."""
    embedded: bool = False
    """Whether the run started the servers itself."""
    options: Mapping[str, object] = field(default_factory=dict)
    """``[audit.options]``."""


AuditCheck = Callable[[AuditRun], Awaitable[list[AuditFigure]]]
"""An audit function: async, given an :class:`AuditRun`, returning its figures."""


@contextlib.asynccontextmanager
async def admin_jetstream(
    settings: MeshSettings, *, max_reconnect_attempts: int = 2
) -> AsyncIterator[JetStreamContext]:
    """JetStream on the run's servers as their admin (every node of a cluster), closed
    after the block: what an audit reads the streams with.

    Args:
        settings: The run's settings (``AuditRun.settings``).
        max_reconnect_attempts: How often to connect again if the connection drops.
    """
    nc = await connect(
        settings.nats_url,
        "load/audit",
        max_reconnect_attempts=max_reconnect_attempts,
        **admin_login(settings).nats_options(),
    )
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def wait_settled(
    js: JetStreamContext, stream: str, consumers: Iterable[str], *, settle_s: float
) -> int:
    """Wait until none of ``consumers`` (of ``stream``) has a task left to deliver or to
    acknowledge, or ``settle_s`` passed: a task whose replica was killed comes back only
    after AckWait, so an audit that counts right after the load may find it half done.

    Returns:
        The tasks still pending or unacknowledged, over the consumers (0: settled).
    """
    names = list(consumers)
    give_up = time.monotonic() + settle_s
    while True:
        try:
            infos = [await js.consumer_info(stream, name) for name in names]
        except UNAVAILABLE:  # a restart or a cluster's election still under way: ask again
            if time.monotonic() >= give_up:
                raise
        else:
            in_flight = sum((i.num_pending or 0) + (i.num_ack_pending or 0) for i in infos)
            if in_flight == 0 or time.monotonic() >= give_up:
                return in_flight
        await asyncio.sleep(SETTLE_POLL_S)


def load_check(spec: Audit) -> AuditCheck:
    """The function ``spec.check`` names, imported.

    Raises:
        ConfigError: the module cannot be imported, has no such name, or it is not an
            async function.
    """
    module_name, _, name = spec.check.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"audit.check: cannot import {module_name}: {exc}") from None
    check = getattr(module, name, None)
    if check is None:
        raise ConfigError(f"audit.check: {module_name} has no {name!r}")
    if not inspect.iscoroutinefunction(check):
        raise ConfigError(f"audit.check: {spec.check} is not an async function")
    return check  # type: ignore[no-any-return]


async def run_audit(spec: Audit, run: AuditRun) -> list[AuditFigure]:
    """Run the audit ``spec`` names; a function that raises or returns something else
    gives one failing figure (``audit failed``) saying why, so the run reports it rather
    than losing the load's figures.

    Raises:
        ConfigError: the function cannot be found (see :func:`load_check`).
    """
    check = load_check(spec)
    try:
        figures = await check(run)
    except Exception as exc:  # the mesh's own code: reported as a failed figure
        return [_failed(f"{spec.check} raised {type(exc).__name__}: {exc}")]
    if not isinstance(figures, list) or not all(isinstance(f, AuditFigure) for f in figures):
        return [_failed(f"{spec.check} did not return a list of AuditFigure")]
    return figures


def with_audit(report: LoadReport, figures: list[AuditFigure]) -> LoadReport:
    """``report`` with ``figures`` as its audit, its verdict ``fail`` if one fails."""
    verdict = "fail" if report.verdict == "fail" or not all(f.ok for f in figures) else "pass"
    return msgspec.structs.replace(report, audit=figures, verdict=verdict)


def _failed(detail: str) -> AuditFigure:
    return AuditFigure(name="audit failed", value=1, most=0, detail=detail)
