"""The gateway's directory of exposed agents: which agents its certificate names, and one
``$SRV.INFO`` reading per agent, kept for the mesh's ``call_preflight_ttl_s`` (on servers
that enforce a policy where the gateway calls ``echo``, served, and ``idle``, not)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jetmesh.policy import parse_policy
from services.gateway import GatewaySettings
from services.gateway.a2a import A2ADoor
from services.gateway.directory import Described, Directory, described, object_schema, task_agents
from tests.harness.secured import SecuredMesh
from tests.services.gateway.agents import echo_agent
from tests.services.gateway.conftest import API_KEYS, Served, serve

SHOUT = "test.Shout/1"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def two_exposed(tmp_path: Path) -> AsyncIterator[Served]:
    """The gateway exposing ``echo`` (one replica) and ``idle`` (none)."""
    policy = {
        "roles": {"gateway": {"ingress": True, "calls": ["echo", "idle"]}, "echo": {}, "idle": {}}
    }
    secured = SecuredMesh(tmp_path / "state", parse_policy(policy))
    await asyncio.to_thread(secured.up)
    try:
        await secured.start_replicas(echo_agent())
        served = await serve(secured, GatewaySettings(api_keys=API_KEYS))
        try:
            yield served
        finally:
            await served.http.aclose()
            await served.gateway.close()
    finally:
        try:
            await secured.aclose()
        finally:
            await asyncio.to_thread(secured.down)


# -- which agents ---------------------------------------------------------------------------


def test_only_literal_task_subjects_under_the_prefix_name_agents() -> None:
    publish = [
        "jm.agent.echo.task",
        "jm.agent.*.task",  # a wildcard names no one agent
        "jm.agent.>",
        "jm.agent.a.b.task",  # not one token
        "jm.agent.echo.reply.x",
        "other.agent.billing.task",  # another prefix
        "jm.event.>",
        "jmXagent.kb.task",  # the prefix's dot is a dot
        "jm.agent.kb.task",
    ]
    assert task_agents(publish, "jm") == {"echo", "kb"}
    assert task_agents([], "jm") == set()


async def test_exposed_are_the_agents_of_the_certificate(two_exposed: Served) -> None:
    assert two_exposed.gateway.directory.exposed() == ["echo", "idle"]


# -- what each says -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "answered"),
    [
        (b"not json", False),
        (b"\xff\xfe", False),
        (b"[]", False),
        (b'{"name": "someone-else", "description": "forged"}', False),
        (b'{"name": "echo", "description": 5, "endpoints": 5}', True),
        (b'{"name": "echo", "endpoints": [5, {"metadata": 5}, {"metadata": {}}]}', True),
    ],
)
def test_an_info_answer_not_shaped_as_one_says_nothing(data: bytes, answered: bool) -> None:
    found = described(data, "echo", 1.0)
    assert (found.name, found.asked, found.answered) == ("echo", 1.0, answered)
    assert (found.description, found.inputs, found.output_schema) == ("", {}, None)


def test_an_info_answer_gives_the_description_inputs_and_a_single_output_schema() -> None:
    out = {"$ref": "#/$defs/R", "$defs": {"R": {"type": "object", "properties": {}}}}
    first = {
        "input_type": "A/1",
        "input_schema": '{"type": "object"}',
        "output_schema": json.dumps(out),
    }
    answer = {"name": "echo", "description": "shouts back", "endpoints": [{"metadata": first}]}
    found = described(json.dumps(answer).encode(), "echo", 1.0)
    assert (found.answered, found.description) == (True, "shouts back")
    assert found.inputs == {"A/1": {"type": "object"}}
    assert found.output_schema == out
    second = {"input_type": "B/1", "input_schema": "[1]", "output_schema": "{}"}
    answer["endpoints"] = [{"metadata": first}, {"metadata": second}]
    two = described(json.dumps(answer).encode(), "echo", 1.0)
    assert two.inputs == {"A/1": {"type": "object"}, "B/1": {}}  # [1] is no schema
    assert two.output_schema is None  # two handlers: no one output schema


def test_object_schema_resolves_a_top_level_ref() -> None:
    schema = {"$ref": "#/$defs/A", "$defs": {"A": {"type": "object", "properties": {}}}}
    assert object_schema(schema) == {"type": "object", "properties": {}, "$defs": schema["$defs"]}
    assert object_schema({"type": "string"}) is None
    assert object_schema({"$ref": "#/$defs/B", "$defs": {}}) is None
    assert object_schema({"$ref": "#/$defs/A", "$defs": {"A": 5}}) is None


async def test_an_answer_is_asked_once_and_kept_for_the_preflight_ttl(two_exposed: Served) -> None:
    clock = Clock()
    directory = Directory(two_exposed.gateway.door, clock=clock)
    echo = await directory.describe("echo")
    assert (echo.answered, echo.description, list(echo.inputs)) == (True, "shouts back", [SHOUT])
    assert echo.inputs[SHOUT]["$ref"] == "#/$defs/Shout"
    assert echo.output_schema is not None
    assert set(echo.output_schema["$defs"]["Shouted"]["properties"]) == {
        "text",
        "caller",
        "tenant",
        "scopes",
    }
    ttl = two_exposed.gateway.mesh_settings.call_preflight_ttl_s
    clock.now += ttl - 0.001
    assert await directory.describe("echo") is echo
    assert directory.asked == 1
    clock.now += 0.001
    again = await directory.describe("echo")
    assert directory.asked == 2
    assert again is not echo
    assert (again.answered, again.asked) == (True, clock.now)


async def test_an_agent_nobody_answers_for_is_undescribed_and_asked_again(
    two_exposed: Served,
) -> None:
    directory = Directory(two_exposed.gateway.door, clock=Clock())
    idle = await directory.describe("idle")
    assert idle == Described("idle", idle.asked)
    assert not idle.answered
    assert await directory.describe("idle") == idle
    assert directory.asked == 2


async def test_an_agent_that_stops_answering_keeps_its_last_description(
    two_exposed: Served,
) -> None:
    clock = Clock()
    directory = Directory(two_exposed.gateway.door, clock=clock)
    echo = await directory.describe("echo")
    for replica in two_exposed.secured.replicas:
        await replica.drain(timeout=5.0)
    clock.now += two_exposed.gateway.mesh_settings.call_preflight_ttl_s
    assert await directory.describe("echo") is echo
    assert await directory.describe("echo") is echo
    assert directory.asked == 3  # still asked each time: it is stale


async def test_the_gateway_keeps_one_directory_for_its_doors(two_exposed: Served) -> None:
    """The A2A door reads the gateway's directory (the MCP door reads it through the
    gateway): the card route's reading serves the next one."""
    gateway = two_exposed.gateway
    assert A2ADoor(gateway).directory is gateway.directory
    card = await two_exposed.http.get("/.well-known/agent-card.json")
    assert card.status_code == 200
    skills = {s["id"]: s["description"] for s in card.json()["skills"]}
    assert skills["echo"].startswith("shouts back")
    asked = gateway.directory.asked
    assert asked == 2
    await two_exposed.http.get("/a2a/echo/.well-known/agent-card.json")
    assert gateway.directory.asked == asked  # echo's reading is still fresh
