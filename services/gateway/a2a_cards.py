"""What the gateway's A2A cards say: the agents it exposes (its certificate's task
subjects), each described by its replicas (``$SRV.INFO``: description, input types and
their JSON Schemas), one skill per agent, bearer authentication.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from .door import Door

log = logging.getLogger("services.gateway.a2a")

BEARER = "bearer"
"""The name of the cards' security scheme."""
JSON = "application/json"
TEXT = "text/plain"
INFO_TIMEOUT_S = 0.5
INFO_TTL_S = 30.0
"""How long an agent's description is kept."""


@dataclass(frozen=True)
class Described:
    """An exposed agent as its replicas describe themselves (``$SRV.INFO``)."""

    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    """Input JSON Schema by input wire type."""


class Directory:
    """The agents the gateway exposes (its certificate's task subjects) and what each
    accepts, asked of their replicas and kept ``INFO_TTL_S``. The answers describe;
    nothing is decided on them (the agent checks every task it gets)."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self._known: dict[str, tuple[float, Described]] = {}

    def exposed(self) -> list[str]:
        mesh = self.door.mesh
        head, tail = f"{mesh.subjects.prefix}.agent.", ".task"
        names = {
            p[len(head) : -len(tail)]
            for p in mesh.certificate.publish
            if p.startswith(head) and p.endswith(tail)
        }
        return sorted(n for n in names if "*" not in n and ">" not in n and self.door.exposes(n))

    async def describe(self, agent: str) -> Described:
        known = self._known.get(agent)
        if known is not None and time.monotonic() - known[0] < INFO_TTL_S:
            return known[1]
        described = Described(agent, "", {})
        try:
            msg = await self.door.mesh.nc.request(f"$SRV.INFO.{agent}", b"", timeout=INFO_TIMEOUT_S)
            described = _described(agent, json.loads(msg.data))
        except (TimeoutError, NatsTimeout, NoRespondersError, ValueError) as exc:
            log.debug("%s not described: %s", agent, exc)  # a card without it still routes
        self._known[agent] = (time.monotonic(), described)
        return described


def _described(agent: str, info: Any) -> Described:
    if not isinstance(info, dict) or info.get("name") != agent:
        return Described(agent, "", {})
    inputs: dict[str, dict[str, Any]] = {}
    for endpoint in info.get("endpoints") or []:
        meta = endpoint.get("metadata") if isinstance(endpoint, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("input_type"), str):
            try:
                schema = json.loads(meta.get("input_schema") or "{}")
            except ValueError:
                schema = {}
            inputs[meta["input_type"]] = schema if isinstance(schema, dict) else {}
    return Described(agent, str(info.get("description") or ""), inputs)


def _one_string_field(schema: dict[str, Any]) -> str | None:
    """The property of an object schema with exactly one required property, a string."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
    required = schema.get("required") or []
    props = schema.get("properties") or {}
    if len(required) == 1 and props.get(required[0], {}).get("type") == "string":
        return str(required[0])
    return None


# -- cards ---------------------------------------------------------------------------------


def _security() -> dict[str, Any]:
    scheme = HTTPAuthSecurityScheme(
        scheme="Bearer",
        bearer_format="API key or JWT",
        description="Authorization: Bearer <API key or JWT>, as the gateway's HTTP routes",
    )
    return {
        "security_schemes": {BEARER: SecurityScheme(http_auth_security_scheme=scheme)},
        "security_requirements": [SecurityRequirement(schemes={BEARER: StringList()})],
    }


def skill_of(described: Described) -> AgentSkill:
    """The one skill of an exposed agent: its id the agent's name, its tags the input
    types, its examples the input schemas."""
    types = sorted(described.inputs)
    text = described.description or f"the mesh agent {described.name}"
    if types:
        text += f" (accepts {', '.join(types)} as a data part)"
    modes = [JSON, TEXT] if text_field(described) else [JSON]
    return AgentSkill(
        id=described.name,
        name=described.name,
        description=text,
        tags=["jetmesh", *types],
        examples=[json.dumps(described.inputs[t], sort_keys=True) for t in types],
        input_modes=modes,
        output_modes=[JSON],
    )


def text_field(described: Described) -> str | None:
    if len(described.inputs) != 1:
        return None
    return _one_string_field(next(iter(described.inputs.values())))


MESH_SKILL = AgentSkill(id="mesh", name="mesh", description="a mesh agent", tags=["jetmesh"])
"""The request handler's own card's skill (it checks capabilities only)."""


def card(name: str, description: str, url: str, skills: list[AgentSkill]) -> AgentCard:
    """An agent card with the JSON-RPC interface at ``url`` and bearer authentication."""
    return AgentCard(
        name=name,
        description=description,
        version="1",
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=v
            )
            for v in (PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_0_3)
        ],
        capabilities=AgentCapabilities(streaming=False, push_notifications=False),
        default_input_modes=[JSON, TEXT],
        default_output_modes=[JSON],
        skills=skills,
        **_security(),
    )
