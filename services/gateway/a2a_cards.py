"""What the gateway's A2A cards say: the agents it exposes, each as its replicas describe
it (:class:`~services.gateway.directory.Described`: description, input types and their
JSON Schemas), one skill per agent, bearer authentication.
"""

from __future__ import annotations

import json
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

from .directory import Described, object_schema

BEARER = "bearer"
"""The name of the cards' security scheme."""
JSON = "application/json"
TEXT = "text/plain"


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
    """The property a text message fills, for an agent whose one input type is an object
    with exactly one required property, a string; None for any other agent."""
    if len(described.inputs) != 1:
        return None
    schema = object_schema(next(iter(described.inputs.values()))) or {}
    required, props = schema.get("required"), schema.get("properties")
    if not (isinstance(required, list) and len(required) == 1 and isinstance(props, dict)):
        return None
    field = required[0]
    prop = props.get(field) if isinstance(field, str) else None
    return field if isinstance(prop, dict) and prop.get("type") == "string" else None


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
