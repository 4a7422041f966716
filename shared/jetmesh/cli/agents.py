"""``jetmesh agents``: which roles run, how many replicas, where, and what they are doing.

It asks the NATS service API (``$SRV.PING``, ``$SRV.INFO``, ``$SRV.STATS``) as the ``cli``
ingress and lists what answered within half a second. The answers are claims of whoever
answered (any role may answer in another's name): shown as data, decided on by nothing
(:mod:`jetmesh.runtime.discovery`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import typer
from nats.aio.client import Client
from rich.table import Table

from .._exceptions import ConfigError
from ..bus.connection import connect
from ..logins import role_login
from ..runtime.discovery import SURVEY_WINDOW_S, Seen, survey
from ..settings import MeshSettings
from .common import console, run_async, settings
from .ingress import CLI_IDENTITY
from .render import plain


@dataclass
class RoleRow:
    """One role's replicas, added up."""

    role: str
    replicas: list[Seen] = field(default_factory=list)

    @property
    def versions(self) -> list[str]:
        return sorted({r.version for r in self.replicas})

    @property
    def where(self) -> list[str]:
        return [
            f"{r.id}@{r.metadata.get('host', '?')}:{r.metadata.get('pid', '?')}"
            for r in self.replicas
        ]

    def total(self, what: str) -> int | None:
        """The replicas' ``in_flight``, ``handled`` or ``errors`` added up; None when
        no replica reports it."""
        values = [getattr(c, what) for r in self.replicas if (c := r.replica_counts())]
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    def consumer(self, what: str) -> int | None:
        """The role's consumer's ``lag`` or ``ack_pending``: every replica reads the same
        consumer, so the largest of their last readings; None when none reports it."""
        values = [getattr(c, what) for r in self.replicas if (c := r.replica_counts())]
        known = [v for v in values if v is not None]
        return max(known) if known else None

    @property
    def last_seen(self) -> float:
        return max(r.last_seen for r in self.replicas)

    def as_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "replicas": len(self.replicas),
            "versions": self.versions,
            "in_flight": self.total("in_flight"),
            "handled": self.total("handled"),
            "errors": self.total("errors"),
            "lag": self.consumer("lag"),
            "ack_pending": self.consumer("ack_pending"),
            "last_seen": self.last_seen,
            "instances": [
                {
                    "id": r.id,
                    "version": r.version,
                    "metadata": r.metadata,
                    "endpoints": r.info.get("endpoints", []),
                    "counts": vars(c) if (c := r.replica_counts()) else None,
                    "last_seen": r.last_seen,
                }
                for r in self.replicas
            ],
        }


def by_role(seen: list[Seen]) -> list[RoleRow]:
    rows: dict[str, RoleRow] = {}
    for item in seen:
        rows.setdefault(item.name, RoleRow(item.name)).replicas.append(item)
    return [rows[name] for name in sorted(rows)]


def _figure(value: int | None) -> str:
    return "-" if value is None else str(value)


@dataclass(frozen=True)
class Rates:
    """A role's tasks per second between two surveys (``jetmesh top``)."""

    handled: float
    errors: float | None
    """None when its replicas do not count failed tasks."""


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(rows: list[RoleRow], rates: dict[str, Rates] | None = None) -> Table:
    """The roles as ``jetmesh agents`` prints them (every value shown as data); with
    ``rates`` (``jetmesh top``), handled/s and errors/s beside the totals, ``-`` for a
    role not seen in the survey before."""
    out = Table(box=None, pad_edge=False)
    for column in ("role", "replicas", "version", "instances", "in flight", "handled"):
        out.add_column(column, justify="right" if column in ("replicas",) else "left")
    if rates is not None:
        out.add_column("handled/s")
    out.add_column("errors")
    if rates is not None:
        out.add_column("errors/s")
    out.add_column("lag")
    out.add_column("last seen")
    for row in rows:
        rate = rates.get(row.role) if rates is not None else None
        cells = [
            plain(row.role, limit=64),
            str(len(row.replicas)),
            plain(", ".join(row.versions), limit=60),
            plain("\n".join(row.where), limit=1000, lines=True),
            _figure(row.total("in_flight")),
            _figure(row.total("handled")),
        ]
        if rates is not None:
            cells.append(_rate(rate.handled if rate else None))
        cells.append(_figure(row.total("errors")))
        if rates is not None:
            cells.append(_rate(rate.errors if rate else None))
        cells += [
            _figure(row.consumer("lag")),
            time.strftime("%H:%M:%S", time.localtime(row.last_seen)),
        ]
        out.add_row(*cells)
    return out


class Surveyor:
    """A connection as the ``cli`` ingress that asks the service API, as often as needed
    (``jetmesh agents`` once, ``jetmesh top`` every few seconds).

    Example:
        >>> async with Surveyor(settings) as surveyor:          # doctest: +SKIP
        ...     seen = await surveyor.ask()
    """

    def __init__(self, s: MeshSettings, name: str = "jetmesh agents") -> None:
        self.settings = s
        self.name = name
        self._errors: list[Exception] = []
        self._nc: Client | None = None

    async def __aenter__(self) -> Surveyor:
        login = role_login(self.settings, CLI_IDENTITY)
        self._nc = await connect(
            self.settings.nats_url,
            self.name,
            error_listeners=[self._errors.append],
            **login.nats_options(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await nc.close()

    async def ask(self, window_s: float = SURVEY_WINDOW_S) -> list[Seen]:
        """The service instances that answer within ``window_s``.

        Raises:
            ConfigError: nats-server does not let the ``cli`` ask (users made before live
                discovery: ``jetmesh up`` or ``jetmesh policy servers`` makes them again).
        """
        if self._nc is None:
            raise RuntimeError("a Surveyor asks inside `async with`")
        seen = await survey(self._nc, window_s=window_s)
        refused = [e for e in self._errors if "permissions violation" in str(e).lower()]
        if refused:
            raise ConfigError(
                f"nats-server refused the cli's service API requests ({refused[0]}): its "
                "users predate live discovery; `jetmesh up` (or `jetmesh policy servers`) "
                "makes them again"
            )
        return seen


async def ask(s: MeshSettings, window_s: float = SURVEY_WINDOW_S) -> list[Seen]:
    """The service instances that answer within ``window_s``, asked as the ``cli`` ingress.

    Raises:
        ConfigError: as :meth:`Surveyor.ask`.
    """
    async with Surveyor(s) as surveyor:
        return await surveyor.ask(window_s)


async def agents_table(s: MeshSettings, window_s: float = SURVEY_WINDOW_S) -> Table:
    """``jetmesh agents``'s table: the replicas that answer the service API, by role.

    Raises:
        ConfigError: as :func:`ask`.
    """
    return table(by_role(await ask(s, window_s)))


def agents(
    as_json: bool = typer.Option(False, "--json", help="print the answers as JSON"),
    wait: float = typer.Option(SURVEY_WINDOW_S, help="seconds to collect answers"),
) -> None:
    """List the agents that answer the NATS service API: role, replicas, version, where
    they run, tasks in flight, handled, errors, consumer lag (tasks not yet delivered),
    last seen."""
    rows = by_role(run_async(ask(settings(), wait)))
    if as_json:
        print(json.dumps([row.as_json() for row in rows], indent=2))
        return
    if not rows:
        console.print("no agents answered")
        return
    console.print(table(rows))
