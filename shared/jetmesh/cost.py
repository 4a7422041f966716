"""What the mesh's model calls cost, added up from the event log (``jetmesh cost``).

Every model call a handler makes (``ctx.model``) writes a signed ``model`` event with its
model, tokens and cost (:mod:`jetmesh.runtime.model_steps`). This module reads those events
from MESH_EVENTS, one at a time, from a point in time on (the time the stream stored them,
not the time an event claims), verifies each, and adds up calls, tokens and cost by:

- ``role``: the verified signer of the event. An event naming another role than its signer
  fails verification and is not counted (it is counted apart, as not verified).
- ``caller`` and ``tenant``: the subject and tenant claim of the caller token the event
  carries, verified against the ingress keys (``-`` for an event that acts for no caller).
- ``model``: the model that answered, as its role recorded it.

What is counted is what the provider was asked: a call answered from the journal (a re-run
after a crash, which did not ask again) and a failed call (no reply) add nothing. A role
writes its own events, so it can leave a call out or attribute it to a caller whose token
it holds: the role totals are as true as the roles' signatures, the caller and tenant
totals as true as the roles themselves. The figures are for accounting, not for decisions.

Example:
    >>> report = await cost_report(mesh, by="tenant", since=time.time() - 3600)  # doctest: +SKIP
    >>> [(line.key, line.cost_usd) for line in report.lines]                   # doctest: +SKIP
    [('acme', 0.0042), ('globex', 0.0007)]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from . import events as ev
from .bus.direct import Stored, next_stored, read_from
from .event_log import LoggedEvent, usd, verify_event
from .mesh_protocols import EventLogReading
from .runtime.model_steps import FROM_JOURNAL

GroupBy = Literal["caller", "tenant", "role", "model"]
GROUPS: Final[tuple[GroupBy, ...]] = ("caller", "tenant", "role", "model")
NOBODY: Final = "-"
"""The group of an event that acts for no caller."""


@dataclass
class CostLine:
    """One group's model calls: how many, their tokens and their cost."""

    key: str
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    """Calls of a model the price table lacked (their cost is not in ``cost_usd``)."""

    def add(self, event: ev.Event) -> None:
        self.calls += 1
        self.tokens_in += event.tokens_in or 0
        self.tokens_out += event.tokens_out or 0
        if event.cost_usd is None:
            self.unpriced += 1
        else:
            self.cost_usd += event.cost_usd

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
            "unpriced": self.unpriced,
        }

    def __str__(self) -> str:
        unknown = f" (+{self.unpriced} unpriced)" if self.unpriced else ""
        return (
            f"{self.calls} call{'s' if self.calls != 1 else ''}, {self.tokens_in} tokens in, "
            f"{self.tokens_out} out, {usd(self.cost_usd)}{unknown}"
        )


@dataclass
class CostReport:
    """Model calls added up by one grouping, the largest cost first."""

    by: GroupBy
    since: float
    """Unix time from which events were read (by the time the stream stored them)."""
    groups: dict[str, CostLine] = field(default_factory=dict)
    total: CostLine = field(default_factory=lambda: CostLine("total"))
    not_counted: int = 0
    """Model events that failed verification (a bad signature, a role writing in another's
    name): shown, never added."""
    not_asked: int = 0
    """Verified model events that cost nothing again: answered from the journal, or failed."""

    @property
    def lines(self) -> list[CostLine]:
        """The groups, the largest cost first (then the most tokens, then by name)."""
        return sorted(
            self.groups.values(),
            key=lambda line: (-line.cost_usd, -(line.tokens_in + line.tokens_out), line.key),
        )

    def add(self, logged: LoggedEvent) -> None:
        """Count one event of the log (anything but a ``model`` event is ignored)."""
        event = logged.event
        if event.kind != ev.MODEL:
            return
        if not logged.verified:
            self.not_counted += 1
            return
        if event.body is None or event.detail == FROM_JOURNAL:
            self.not_asked += 1
            return
        key = group_of(logged, self.by)
        self.groups.setdefault(key, CostLine(key)).add(event)
        self.total.add(event)

    def as_dict(self) -> dict[str, object]:
        return {
            "by": self.by,
            "since": self.since,
            "groups": [line.as_dict() for line in self.lines],
            "total": self.total.as_dict(),
            "not_counted": self.not_counted,
            "not_asked": self.not_asked,
        }


def group_of(logged: LoggedEvent, by: GroupBy) -> str:
    """The group a verified model event is credited to: its signer for ``role``, its
    verified caller's subject or tenant for ``caller`` or ``tenant``, its model."""
    if by == "role":
        return logged.signer
    if by == "model":
        return logged.event.model or NOBODY
    if logged.identity is None:
        return NOBODY
    return (logged.identity.subject if by == "caller" else logged.identity.tenant) or NOBODY


def tally(events: Iterable[LoggedEvent], by: GroupBy, *, since: float = 0.0) -> CostReport:
    """Add up ``events`` (already read and verified) by ``by``."""
    report = CostReport(by=by, since=since)
    for logged in events:
        report.add(logged)
    return report


def model_subject(mesh: EventLogReading, workflow: str | None) -> str:
    """The subject of the ``model`` events of ``workflow``, or of every workflow."""
    if workflow is not None:
        return mesh.subjects.event(workflow, ev.MODEL)
    return f"{mesh.subjects.prefix}.event.*.{ev.MODEL}"


async def first_after(store: EventLogReading, stream: str, subject: str, since: float) -> int:
    """The sequence after which the messages on ``subject`` were stored at or after
    ``since``: found by probing the stream (doubling, then halving), not by reading it."""

    async def before(after: int) -> Stored | None:
        """The next message after ``after`` if it was stored before ``since``."""
        found = await next_stored(store, stream, subject, after)
        return found if found is not None and found.stored_at < since else None

    probe = await before(0)
    if probe is None:
        return 0
    lo, hi = probe.seq, probe.seq * 2  # all up to lo were stored before since
    while (probe := await before(hi)) is not None:  # until reading after hi finds none
        lo, hi = probe.seq, probe.seq * 2
    while hi - lo > 1:  # the answer is in lo..hi: halve
        mid = (lo + hi) // 2
        probe = await before(mid)
        if probe is None:
            hi = mid
        else:
            lo = probe.seq
    return lo if await before(lo) is None else hi


async def read_model_events(
    mesh: EventLogReading, *, since: float, until: float, workflow: str | None = None
) -> AsyncIterator[LoggedEvent]:
    """The ``model`` events stored from ``since`` to ``until`` (of ``workflow``, or of
    every workflow), one at a time in stream order, each verified: the log is never held
    whole, and a busy mesh's new events do not keep the read going."""
    stream = mesh.settings.events_stream
    subject = model_subject(mesh, workflow)
    after = await first_after(mesh, stream, subject, since)
    async for stored in read_from(mesh, stream, subject, after):
        if stored.stored_at > until:
            return
        yield await verify_event(mesh, stored)


async def cost_report(
    mesh: EventLogReading,
    *,
    by: GroupBy,
    since: float,
    workflow: str | None = None,
    until: float | None = None,
    timeout: float = 60.0,
) -> CostReport:
    """The model calls stored from ``since`` to ``until`` (now by default), of ``workflow``
    or of every workflow, added up by ``by``; ``timeout`` bounds the whole read.

    Raises:
        TimeoutError: the read took longer than ``timeout``.
    """
    report = CostReport(by=by, since=since)
    end = time.time() if until is None else until
    async with asyncio.timeout(timeout):
        async for logged in read_model_events(mesh, since=since, until=end, workflow=workflow):
            report.add(logged)
    return report
