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


def table(rows: list[RoleRow]) -> Table:
    """The roles as ``jetmesh agents`` prints them (every value shown as data)."""
    out = Table(box=None, pad_edge=False)
    for column in ("role", "replicas", "version", "instances", "in flight", "handled"):
        out.add_column(column, justify="right" if column in ("replicas",) else "left")
    out.add_column("errors")
    out.add_column("lag")
    out.add_column("last seen")
    for row in rows:
        out.add_row(
            plain(row.role, limit=64),
            str(len(row.replicas)),
            plain(", ".join(row.versions), limit=60),
            plain("\n".join(row.where), limit=1000, lines=True),
            _figure(row.total("in_flight")),
            _figure(row.total("handled")),
            _figure(row.total("errors")),
            _figure(row.consumer("lag")),
            time.strftime("%H:%M:%S", time.localtime(row.last_seen)),
        )
    return out


async def ask(s: MeshSettings, window_s: float = SURVEY_WINDOW_S) -> list[Seen]:
    """The service instances that answer within ``window_s``, asked as the ``cli`` ingress.

    Raises:
        ConfigError: nats-server does not let the ``cli`` ask (users made before live
            discovery: ``jetmesh up`` or ``jetmesh policy servers`` makes them again).
    """
    login = role_login(s, CLI_IDENTITY)
    errors: list[Exception] = []
    nc = await connect(
        s.nats_url, "jetmesh agents", error_listeners=[errors.append], **login.nats_options()
    )
    try:
        seen = await survey(nc, window_s=window_s)
    finally:
        await nc.close()
    refused = [e for e in errors if "permissions violation" in str(e).lower()]
    if refused:
        raise ConfigError(
            f"nats-server refused the cli's service API requests ({refused[0]}): its users "
            "predate live discovery; `jetmesh up` (or `jetmesh policy servers`) makes them again"
        )
    return seen


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
