"""Live discovery: a replica answers the NATS service API (``$SRV.PING``, ``$SRV.INFO``,
``$SRV.STATS``) so ``nats micro ls`` / ``nats micro info`` and ``jetmesh agents`` see it.

The replica is one instance of the service named after its role: its id is the replica's
instance, its version the jetmesh version, its metadata the instance, host and pid. Each
handler is an endpoint whose subject is the role's task subject and whose queue group is
the role's durable consumer, with the handler's input and output types and their JSON
Schemas in the endpoint's metadata. Nothing subscribes to those endpoint subjects: tasks
come through the role's JetStream consumer. The replica subscribes only to the control
subjects addressed to every service, to its role and to itself::

    $SRV.<VERB>   $SRV.<VERB>.<role>   $SRV.<VERB>.<role>.<instance>

STATS also reports the role's consumer lag as the replica last read it
(:mod:`jetmesh.runtime.lag`).

The answers are informational. Any role may answer ``$SRV.PING`` (it sees the requests
too) and nothing signs the answers, so a compromised role could answer in another role's
name: nothing in jetmesh decides on them.

Example:
    >>> card = ServiceCard.of(agent, settings, instance)        # doctest: +SKIP
    >>> discovery = Discovery(nc, card, counts)                # doctest: +SKIP
    >>> await discovery.start()                                # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..addresses import Subjects
from ..envelope import type_name
from ..policy.derive import SERVICE_API_VERBS
from ..settings import MeshSettings
from .agent import Agent, Handler
from .lag import LagWatch

log = logging.getLogger("jetmesh.discovery")

SERVICE_PREFIX = "$SRV"
"""The root of the NATS service API's control subjects."""

VERSION = importlib.metadata.version("jetmesh")
"""The installed jetmesh's version: the version every replica's service reports."""

VERBS = SERVICE_API_VERBS
"""The requests a service answers."""

SURVEY_WINDOW_S = 0.5
"""How long :func:`survey` collects answers."""

PING_TYPE = "io.nats.micro.v1.ping_response"
INFO_TYPE = "io.nats.micro.v1.info_response"
STATS_TYPE = "io.nats.micro.v1.stats_response"


def control_subjects(verb: str, role: str, instance: str | None = None) -> list[str]:
    """The subjects on which ``verb`` reaches a service instance: all services, the
    service ``role``, and (with ``instance``) that instance alone."""
    subjects = [f"{SERVICE_PREFIX}.{verb}", f"{SERVICE_PREFIX}.{verb}.{role}"]
    if instance is not None:
        subjects.append(f"{SERVICE_PREFIX}.{verb}.{role}.{instance}")
    return subjects


@dataclass(frozen=True)
class Counts:
    """What a replica counts of its work, as STATS reports it."""

    in_flight: int
    handled: int
    errors: int | None = None
    """None where the replica does not count failed tasks."""
    lag: int | None = None
    """Tasks stored for the role's consumer and not yet delivered (``num_pending``); None
    until the replica has read its consumer's info (:mod:`jetmesh.runtime.lag`)."""
    ack_pending: int | None = None
    """Tasks delivered to the role's consumer and not yet acknowledged."""


def _schema(tp: Any) -> str:
    """``tp``'s JSON Schema as a JSON string; ``{}`` for a type msgspec cannot describe."""
    try:
        return json.dumps(msgspec.json.schema(tp), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return "{}"


def _type_label(tp: Any) -> str:
    try:
        return type_name(tp)
    except (AttributeError, TypeError):
        return getattr(tp, "__name__", str(tp))


@dataclass(frozen=True)
class Endpoint:
    """One handler as the service API describes it."""

    name: str
    subject: str
    queue_group: str
    metadata: dict[str, str]

    @classmethod
    def of(cls, handler: Handler, subject: str, queue_group: str) -> Endpoint:
        return cls(
            name=handler.fn.__name__,
            subject=subject,
            queue_group=queue_group,
            metadata={
                "input_type": _type_label(handler.input_type),
                "output_type": _type_label(handler.output_type),
                "input_schema": _schema(handler.input_type),
                "output_schema": _schema(handler.output_type),
                "transport": "jetstream",
            },
        )

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subject": self.subject,
            "queue_group": self.queue_group,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class ServiceCard:
    """Who a replica is, as it answers PING and INFO."""

    role: str
    instance: str
    version: str
    description: str
    metadata: dict[str, str]
    endpoints: tuple[Endpoint, ...]
    stream: str = ""
    """The tasks stream of the role's consumer (named after the role), whose lag STATS
    reports; empty: no lag read."""

    @classmethod
    def of(cls, agent: Agent, settings: MeshSettings, instance: str) -> ServiceCard:
        subjects = Subjects(settings.subject_prefix)
        task = subjects.task(agent.name)
        return cls(
            role=agent.name,
            instance=instance,
            version=VERSION,
            description=agent.description,
            metadata={
                "instance": instance,
                "host": socket.gethostname(),
                "pid": str(os.getpid()),
                "jetmesh": VERSION,
            },
            endpoints=tuple(Endpoint.of(h, task, agent.name) for h in agent.handlers.values()),
            stream=settings.tasks_stream,
        )

    def ping(self) -> dict[str, Any]:
        return {
            "type": PING_TYPE,
            "name": self.role,
            "id": self.instance,
            "version": self.version,
            "metadata": self.metadata,
        }

    def info(self) -> dict[str, Any]:
        return {
            **self.ping(),
            "type": INFO_TYPE,
            "description": self.description,
            "endpoints": [e.info() for e in self.endpoints],
        }


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Discovery:
    """A replica's answers to the service API, from :meth:`start` to :meth:`stop`."""

    def __init__(self, nc: Client, card: ServiceCard, counts: Callable[[], Counts]) -> None:
        self.nc = nc
        self.card = card
        self.counts = counts
        self.started = datetime.now(UTC)
        self._subscriptions: list[Subscription] = []
        self.lag = LagWatch(nc.jetstream(), card.stream, card.role) if card.stream else None
        """The role's consumer lag, read in the background while the replica answers."""

    def stats(self) -> dict[str, Any]:
        """The STATS answer. The replica counts tasks, not tasks per handler: every
        endpoint's ``data`` holds the replica's figures, and with a single handler its
        ``num_requests`` / ``num_errors`` are those figures too. ``lag`` and
        ``ack_pending`` are the role's consumer's, as last read (None before the first
        read, or where the read is refused)."""
        counts = self.counts()
        lag = self.lag.last if self.lag is not None else None
        data = {
            "in_flight": counts.in_flight,
            "handled": counts.handled,
            "errors": counts.errors,
            "lag": None if lag is None else lag.pending,
            "ack_pending": None if lag is None else lag.ack_pending,
        }
        single = len(self.card.endpoints) == 1
        errors = counts.errors or 0
        endpoints = [
            {
                "name": e.name,
                "subject": e.subject,
                "queue_group": e.queue_group,
                "num_requests": counts.handled + errors if single else 0,
                "num_errors": errors if single else 0,
                "last_error": "",
                "processing_time": 0,
                "average_processing_time": 0,
                "data": data,
            }
            for e in self.card.endpoints
        ]
        return {
            **self.card.ping(),
            "type": STATS_TYPE,
            "started": _stamp(self.started),
            "endpoints": endpoints,
        }

    def _answer(self, verb: str) -> dict[str, Any]:
        if verb == "PING":
            return self.card.ping()
        if verb == "INFO":
            return self.card.info()
        return self.stats()

    async def start(self) -> None:
        """Answer PING, INFO and STATS (and read the consumer's lag) from now on.
        Idempotent."""
        if self._subscriptions:
            return
        self.started = datetime.now(UTC)
        if self.lag is not None:
            await self.lag.start()
        for verb in VERBS:

            async def answer(msg: Msg, verb: str = verb) -> None:
                if not msg.reply:
                    return
                try:
                    await msg.respond(json.dumps(self._answer(verb)).encode())
                except Exception as exc:  # informational: never let it hurt the replica
                    log.debug("discovery %s not answered: %s", verb, exc)

            for subject in control_subjects(verb, self.card.role, self.card.instance):
                self._subscriptions.append(await self.nc.subscribe(subject, cb=answer))

    async def stop(self) -> None:
        """Stop answering and reading the lag. Idempotent."""
        if self.lag is not None:
            await self.lag.stop()
        subscriptions, self._subscriptions = self._subscriptions, []
        for sub in subscriptions:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the connection may already be closing
                log.debug("discovery subscription not removed: %s", exc)


@dataclass
class Seen:
    """One service instance as its answers described it (claims: see the module doc)."""

    name: str
    id: str
    version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    last_seen: float = 0.0
    """When its last answer arrived (epoch seconds)."""

    def replica_counts(self) -> Counts | None:
        """The replica's figures from its STATS answer, if it gave them."""
        for endpoint in self.stats.get("endpoints") or []:
            data = endpoint.get("data") if isinstance(endpoint, dict) else None
            if isinstance(data, dict):
                try:
                    return Counts(
                        in_flight=int(data.get("in_flight", 0)),
                        handled=int(data.get("handled", 0)),
                        errors=_optional_int(data.get("errors")),
                        lag=_optional_int(data.get("lag")),
                        ack_pending=_optional_int(data.get("ack_pending")),
                    )
                except (TypeError, ValueError):
                    return None
        return None


def _optional_int(value: Any) -> int | None:
    """``value`` as an int, None as None (raises TypeError / ValueError on junk)."""
    return None if value is None else int(value)


def _text_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


async def survey(nc: Client, *, window_s: float = SURVEY_WINDOW_S) -> list[Seen]:
    """Ask every service for PING, INFO and STATS at once, collect
    the answers for ``window_s`` and return one :class:`Seen` per instance that answered,
    sorted by name and id. Answers that are not JSON objects naming a service are skipped.
    """
    seen: dict[tuple[str, str], Seen] = {}

    async def collect(msg: Msg) -> None:
        try:
            answer = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(answer, dict):
            return
        key = (str(answer.get("name", "")), str(answer.get("id", "")))
        if not all(key):
            return
        item = seen.setdefault(key, Seen(*key))
        item.version = str(answer.get("version", item.version))
        item.metadata = _text_map(answer.get("metadata")) or item.metadata
        item.last_seen = time.time()
        if answer.get("type") == INFO_TYPE:
            item.info = answer
        elif answer.get("type") == STATS_TYPE:
            item.stats = answer

    subscriptions = []
    for verb in VERBS:
        inbox = nc.new_inbox()
        subscriptions.append(await nc.subscribe(inbox, cb=collect))
        await nc.publish(f"{SERVICE_PREFIX}.{verb}", b"", reply=inbox)
    await nc.flush()
    await asyncio.sleep(window_s)
    for sub in subscriptions:
        await sub.unsubscribe()
    return sorted(seen.values(), key=lambda s: (s.name, s.id))
