"""The agents the gateway exposes, and what each one's replicas say about it.

Exposed
    the agents named by the literal task subjects of the gateway's certificate
    (``<prefix>.agent.<agent>.task``; a subject with a wildcard names no one agent), each
    one the gateway may send tasks to (:meth:`~services.gateway.door.Door.exposes`).
Described
    each agent's answer to ``$SRV.INFO.<agent>`` (its description, its input JSON Schemas
    by wire type, its output schema when it has one handler), asked once and kept for the
    mesh's ``call_preflight_ttl_s``; an answer that does not come within
    ``call_preflight_timeout_s`` leaves the agent undescribed (or as it was last
    described) and it is asked again next time. An answer in another agent's name, or not
    shaped as one, says nothing. The answers describe; nothing is decided on them (the
    agent checks every task it gets).

The gateway keeps one :class:`Directory` (:attr:`~services.gateway.gateway.Gateway.directory`),
shared by its MCP and A2A doors.

Example:
    >>> directory = Directory(gateway.door)                      # doctest: +SKIP
    >>> [await directory.describe(a) for a in directory.exposed()]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import nats.errors

from .door import Door

log = logging.getLogger("services.gateway.directory")


@dataclass(frozen=True)
class Described:
    """An exposed agent as its replicas describe it (``$SRV.INFO``)."""

    name: str
    asked: float = 0.0
    """When the answer came (the directory's clock)."""
    answered: bool = False
    """A replica answered, in the agent's name."""
    description: str = ""
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Input JSON Schema by input wire type (``{}`` for one that is not a JSON object)."""
    output_schema: dict[str, Any] | None = None
    """The JSON Schema of the agent's result, when it has exactly one handler that
    publishes one."""


def _parsed(text: object) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object, or None."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def described(data: bytes, agent: str, asked: float) -> Described:
    """``agent`` as an INFO answer ``data`` describes it, read leniently: an answer in
    another name, or not shaped as one, says nothing (``answered`` False), and a field not
    shaped as one is left out."""
    info = _parsed(data.decode(errors="replace"))
    if info is None or info.get("name") != agent:
        return Described(agent, asked)
    endpoints = info.get("endpoints")
    metas = [
        e["metadata"]
        for e in (endpoints if isinstance(endpoints, list) else [])
        if isinstance(e, dict) and isinstance(e.get("metadata"), dict)
    ]
    inputs = {
        m["input_type"]: _parsed(m.get("input_schema") or "{}") or {}
        for m in metas
        if isinstance(m.get("input_type"), str)
    }
    outputs = [_parsed(m.get("output_schema")) for m in metas]
    description = info.get("description")
    return Described(
        agent,
        asked,
        answered=True,
        description=description if isinstance(description, str) else "",
        inputs=inputs,
        output_schema=outputs[0] if len(outputs) == 1 else None,
    )


def object_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """``schema`` with a top-level ``$ref`` to its own ``$defs`` resolved (msgspec writes
    a struct's schema so), if it describes an object; None otherwise."""
    ref = schema.get("$ref")
    defs = schema.get("$defs")
    if isinstance(ref, str) and isinstance(defs, dict) and ref.startswith("#/$defs/"):
        target = defs.get(ref.removeprefix("#/$defs/"))
        if not isinstance(target, dict):
            return None
        schema = {**target, "$defs": defs}
    return schema if schema.get("type") == "object" else None


def task_agents(publish: Iterable[str], prefix: str) -> set[str]:
    """The agents whose task subjects (``<prefix>.agent.<agent>.task``) are literally in
    ``publish`` (a certificate's publish list); a subject with a wildcard names no one
    agent."""
    shape = re.compile(re.escape(prefix) + r"\.agent\.([^.*>]+)\.task")
    return {m.group(1) for p in publish if (m := shape.fullmatch(p))}


class Directory:
    """The agents a gateway exposes and their descriptions, kept per agent.

    Args:
        door: the gateway's work on the mesh (its connection, certificate and settings).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, door: Door, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.door = door
        self.clock = clock
        self.asked = 0
        """``$SRV.INFO`` requests sent so far."""
        self._known: dict[str, Described] = {}

    def exposed(self) -> list[str]:
        """The agents the gateway's certificate names as ones it sends tasks to, sorted."""
        mesh = self.door.mesh
        found = task_agents(mesh.certificate.publish, mesh.subjects.prefix)
        return sorted(a for a in found if self.door.exposes(a))

    async def describe(self, agent: str) -> Described:
        """``agent`` as its replicas last described it: asked once per
        ``call_preflight_ttl_s``; an agent that does not answer is asked again next time."""
        settings = self.door.mesh.settings
        known = self._known.get(agent)
        now = self.clock()
        if known is not None and now - known.asked < settings.call_preflight_ttl_s:
            return known
        self.asked += 1
        try:
            msg = await self.door.mesh.nc.request(
                f"$SRV.INFO.{agent}", b"", timeout=settings.call_preflight_timeout_s
            )
        except (TimeoutError, nats.errors.Error) as exc:
            log.debug("%s not described: %s", agent, exc)  # listed without it, asked again
            return known or Described(agent, now)
        self._known[agent] = found = described(msg.data, agent, now)
        return found
