"""The A2A door on servers that enforce the policy, driven by the a2a-sdk's own client
(card resolver + client) over the app in process."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from a2a.client import A2ACardResolver, A2AClientError, Client, ClientConfig, ClientFactory
from a2a.helpers.proto_helpers import get_data_parts, new_data_part, new_text_part
from a2a.types import (
    AgentCard,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError, UnsupportedOperationError
from google.protobuf.json_format import ParseDict

from jetmesh import KeyStore, MeshClient
from jetmesh import events as ev
from jetmesh.event_log import read_events
from jetmesh.logins import nats_seed_file
from services.gateway.a2a import SKILL_KEY
from services.gateway.a2a_cards import text_field
from services.gateway.directory import Described
from tests.harness.secured import SecuredMesh
from tests.services.gateway import test_jwt
from tests.services.gateway.conftest import ALICE_KEY, BOB_KEY, Served, auth
from tests.services.gateway.test_jwt import OTHER_RSA, token
from tests.services.gateway.test_tasks import accepted_events, audited

pytestmark = pytest.mark.integration

BASE = "http://gateway.test"
jwks = test_jwt.jwks
jwt_served = test_jwt.jwt_served
"""The JWT issuer's fixtures: its JWKS on loopback and the gateway that trusts it."""


def http_of(served: Served, key: str | None = ALICE_KEY) -> httpx.AsyncClient:
    transport = served.http._transport  # the app in process
    headers = auth(key) if key is not None else {}
    return httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers)


@pytest.fixture
async def alice(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with http_of(served) as http:
        yield http


async def resolve(http: httpx.AsyncClient, path: str) -> AgentCard:
    return await A2ACardResolver(http, BASE).get_agent_card(path)


def client_of(http: httpx.AsyncClient, card: AgentCard) -> Client:
    return ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)


def message(*parts: Part, metadata: dict[str, Any] | None = None) -> Message:
    m = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=list(parts))
    if metadata:
        ParseDict(metadata, m.metadata)
    return m


async def send(client: Client, msg: Message, **config: Any) -> Task:
    request = SendMessageRequest(message=msg, configuration=SendMessageConfiguration(**config))
    answers = [r async for r in client.send_message(request)]
    assert len(answers) == 1, answers
    assert answers[0].HasField("task"), answers
    return answers[0].task


def result_of(task: Task) -> Any:
    [artifact] = task.artifacts
    [data] = get_data_parts(artifact.parts)
    return data


async def test_the_agent_card_validates_and_a_message_completes_as_the_caller(
    served: Served, alice: httpx.AsyncClient
) -> None:
    card = await resolve(alice, "/a2a/echo/.well-known/agent-card.json")
    assert card.name == "echo"
    assert card.description == "shouts back"
    assert [s.id for s in card.skills] == ["echo"]
    assert "test.Shout/1" in card.skills[0].tags
    assert card.supported_interfaces[0].url == f"{BASE}/a2a/echo"
    assert card.supported_interfaces[0].protocol_binding == "JSONRPC"
    assert not card.capabilities.streaming
    scheme = card.security_schemes["bearer"].http_auth_security_scheme
    assert scheme.scheme == "Bearer"

    client = client_of(alice, card)
    task = await send(client, message(new_data_part({"text": "hi"})))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
    assert result_of(task) == {
        "text": "HI",
        "caller": "alice",
        "tenant": "acme",
        "scopes": ["kb:read"],
    }
    # the task id is the workflow id; its events name the A2A caller
    logged = await read_events(served.gateway.door.mesh, task.id)
    accepted = [e.event for e in logged if e.verified and e.event.kind == ev.ACCEPTED]
    assert [(e.target, e.caller) for e in accepted] == [("echo", "alice")]
    assert all(e.caller == "alice" for e in logged if e.verified and e.event.caller)

    # a text message to an agent whose input is one string
    task = await send(client, message(new_text_part("loud")))
    assert result_of(task)["text"] == "LOUD"

    got = await client.get_task(GetTaskRequest(id=task.id))
    assert got.status.state == TaskState.TASK_STATE_COMPLETED
    assert result_of(got)["text"] == "LOUD"


async def test_a_typed_error_is_a_failed_task(served: Served, alice: httpx.AsyncClient) -> None:
    card = await resolve(alice, "/a2a/echo/.well-known/agent-card.json")
    task = await send(client_of(alice, card), message(new_data_part({"text": "no"})))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    said = task.status.message.parts[0].text
    assert "rejected-by-handler" in said
    assert "said-no" in said
    # read back from the log by another replica: the same verdict
    served.http._transport.app.state.a2a = None  # type: ignore[attr-defined]
    got = await client_of(alice, card).get_task(GetTaskRequest(id=task.id))
    assert got.status.state == TaskState.TASK_STATE_FAILED
    assert got.status.message.parts[0].text == said


async def test_a_body_the_agent_refuses_is_a_rejected_task_and_audited(
    served: Served, alice: httpx.AsyncClient
) -> None:
    client = client_of(alice, await resolve(alice, "/a2a/echo/.well-known/agent-card.json"))
    task = await send(client, message(new_data_part({"text": 5})))
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    assert task.status.message.parts[0].text.startswith("body-rejected")
    assert len(await audited(served, "body-rejected")) == 1


async def test_get_task_reads_the_log_for_its_own_caller_only(served: Served) -> None:
    async with http_of(served) as alice, http_of(served, BOB_KEY) as bob:
        card = await resolve(alice, "/a2a/echo/.well-known/agent-card.json")
        client = client_of(alice, card)
        task = await send(
            client,
            message(new_data_part({"text": "later", "pause_s": 0.2})),
            return_immediately=True,
        )
        assert task.status.state in (
            TaskState.TASK_STATE_SUBMITTED,
            TaskState.TASK_STATE_WORKING,
        )
        # another replica (a fresh door) reads it from the signed log, once stored
        while True:  # bounded by the test's timeout
            if await accepted_events(served, task.id):
                break
            await asyncio.sleep(0.05)
        fresh = client_of(alice, card)
        served_app = served.http._transport.app  # type: ignore[attr-defined]
        served_app.state.a2a = None
        while True:
            got = await fresh.get_task(GetTaskRequest(id=task.id))
            if got.status.state == TaskState.TASK_STATE_COMPLETED:
                break
            assert got.status.state == TaskState.TASK_STATE_WORKING
            await asyncio.sleep(0.05)
        assert result_of(got)["text"] == "LATER"
        assert got.artifacts[0].artifact_id == task.id + "-result"
        assert dict(got.artifacts[0].metadata) == {"type": "test.Shouted/1"}
        with pytest.raises(TaskNotFoundError):
            await client_of(bob, card).get_task(GetTaskRequest(id=task.id))
        with pytest.raises(TaskNotFoundError):
            await fresh.get_task(GetTaskRequest(id="W" + "A" * 25))


async def test_the_gateway_card_routes_by_skill(served: Served, alice: httpx.AsyncClient) -> None:
    card = await resolve(alice, "/.well-known/agent-card.json")
    assert [s.id for s in card.skills] == ["echo"]
    assert card.supported_interfaces[0].url == f"{BASE}/a2a"
    client = client_of(alice, card)
    task = await send(client, message(new_data_part({"text": "hey"}), metadata={SKILL_KEY: "echo"}))
    assert result_of(task)["text"] == "HEY"
    for skill in ("other", "nope", None):
        meta = {SKILL_KEY: skill} if skill else None
        with pytest.raises(InvalidParamsError, match="unknown-agent"):
            await send(client, message(new_data_part({"text": "x"}), metadata=meta))
    assert len(await audited(served, "unknown-agent")) == 3


@pytest.mark.parametrize("key", [None, "jmk_wrong"])
async def test_no_or_a_bad_credential_is_refused_and_audited(
    served: Served, key: str | None
) -> None:
    async with http_of(served) as alice, http_of(served, key) as stranger:
        card = await resolve(alice, "/a2a/echo/.well-known/agent-card.json")
        with pytest.raises(A2AClientError, match="401"):
            await send(client_of(stranger, card), message(new_data_part({"text": "x"})))
        r = await stranger.post("/a2a", json={"jsonrpc": "2.0", "id": 1, "method": "GetTask"})
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith('Bearer realm="jetmesh"')
        assert (key is None) == ("invalid_token" not in r.headers["www-authenticate"])
    reason = "missing-credentials" if key is None else "unknown-api-key"
    assert len(await audited(served, reason)) == 2


async def test_an_agent_not_exposed_has_no_card_and_no_endpoint(
    served: Served, alice: httpx.AsyncClient
) -> None:
    for agent in ("other", "toolgate", "no.such"):
        r = await alice.get(f"/a2a/{agent}/.well-known/agent-card.json")
        assert (r.status_code, r.json()["reason"]) == (404, "unknown-agent")
        r = await alice.post(
            f"/a2a/{agent}",
            json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}},
            headers={"A2A-Version": "1.0"},
        )
        assert (r.status_code, r.json()["reason"]) == (404, "unknown-agent")
    assert len(await audited(served, "unknown-agent")) == 6


async def test_a_v0_3_client_sends_message_send_and_tasks_get(alice: httpx.AsyncClient) -> None:
    def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}

    part = {"kind": "data", "data": {"text": "old"}}
    sent = {"message": {"role": "user", "messageId": "m-1", "parts": [part]}}
    r = await alice.post("/a2a/echo", json=rpc("message/send", sent))
    assert r.status_code == 200, r.text
    task = r.json()["result"]
    assert (task["kind"], task["status"]["state"]) == ("task", "completed")
    assert task["artifacts"][0]["parts"][0]["data"]["text"] == "OLD"
    r = await alice.post("/a2a/echo", json=rpc("tasks/get", {"id": task["id"]}))
    assert r.json()["result"]["status"]["state"] == "completed"


async def test_text_to_an_agent_that_takes_more_is_rejected(
    served: Served, alice: httpx.AsyncClient
) -> None:
    """``other`` is not exposed; ``echo``'s input has one required string, so text goes
    to it; two data parts are refused."""
    client = client_of(alice, await resolve(alice, "/a2a/echo/.well-known/agent-card.json"))
    two = message(new_data_part({"text": "a"}), new_data_part({"text": "b"}))
    task = await send(client, two)
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    assert task.status.message.parts[0].text.startswith("bad-request")
    assert len(await audited(served, "bad-request")) == 1


_STRING = {"type": "string"}


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        (
            {"A/1": {"type": "object", "required": ["text"], "properties": {"text": _STRING}}},
            "text",
        ),
        (
            {
                "A/1": {
                    "$ref": "#/$defs/A",
                    "$defs": {
                        "A": {"type": "object", "required": ["q"], "properties": {"q": _STRING}}
                    },
                }
            },
            "q",
        ),
        ({}, None),  # nothing known
        ({"A/1": {}, "B/1": {}}, None),  # two input types
        (
            {
                "A/1": {
                    "type": "object",
                    "required": ["n"],
                    "properties": {"n": {"type": "integer"}},
                }
            },
            None,
        ),
        ({"A/1": {"type": "object", "required": ["a", "b"], "properties": {"a": _STRING}}}, None),
        ({"A/1": {"type": "object", "required": "text", "properties": {"text": _STRING}}}, None),
        (
            {"A/1": {"type": "object", "required": [["text"]], "properties": {"text": _STRING}}},
            None,
        ),
        ({"A/1": {"type": "object", "required": ["text"], "properties": ["text"]}}, None),
        ({"A/1": {"type": "object", "required": ["text"], "properties": {"text": 5}}}, None),
        ({"A/1": {"type": "string"}}, None),
    ],
)
def test_text_fills_the_one_required_string_of_the_one_input(
    inputs: dict[str, dict[str, Any]], field: str | None
) -> None:
    """A schema not shaped as one (as a replica may publish it) gives no text field."""
    assert text_field(Described("echo", inputs=inputs)) == field


async def test_the_same_message_id_again_starts_nothing(
    served: Served, alice: httpx.AsyncClient
) -> None:
    client = client_of(alice, await resolve(alice, "/a2a/echo/.well-known/agent-card.json"))
    msg = message(new_data_part({"text": "once"}))
    first = await send(client, msg)
    assert first.status.state == TaskState.TASK_STATE_COMPLETED
    with pytest.raises(UnsupportedOperationError, match="terminal state"):
        await send(client, msg)
    assert len(await accepted_events(served, first.id)) == 1


@pytest.fixture
async def other_role(enforced: SecuredMesh) -> AsyncIterator[MeshClient]:
    """The role ``other`` compromised: its signing key, certificate and nkey seed only."""
    source = enforced.keys.directory
    into = enforced.settings.resolved_keys_dir.parent / "stolen-other"
    wanted = [
        Path("other.key"),
        Path("other.cert"),
        nats_seed_file(Path(), "other"),
        *(p.relative_to(source) for p in (source / "roots").glob("*.pub")),
    ]
    for relative in wanted:
        (into / relative).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(source / relative, into / relative)
    settings = enforced.settings.model_copy(update={"keys_dir": into})
    store = KeyStore(into)
    mesh = MeshClient(settings, store.identity("other"), roots=store.roots())
    await mesh.start()
    try:
        yield mesh
    finally:
        await mesh.close()


def forged(kind: str, task: str, **fields: Any) -> ev.Event:
    return ev.Event(kind=kind, agent="echo", at=time.time(), instance="x", task=task, **fields)


async def test_a_compromised_role_cannot_end_a_task_nor_claim_one(
    served: Served, other_role: MeshClient
) -> None:
    async with http_of(served) as alice:
        card = await resolve(alice, "/a2a/echo/.well-known/agent-card.json")
        client = client_of(alice, card)
        task = await send(
            client,
            message(new_data_part({"text": "real", "pause_s": 1.0})),
            return_immediately=True,
        )
        while True:  # bounded by the test's timeout
            accepted = await accepted_events(served, task.id)
            if accepted:
                break
            await asyncio.sleep(0.05)
        root = accepted[0].task or ""
        # ``other`` logs the root task as completed by "echo", with a result of its own
        lie = ev.EventPayload(type="test.Shouted/1", value=msgspec.Raw(b'{"text": "FORGED"}'))
        await other_role.emit(task.id, forged(ev.COMPLETED, root, body=lie), caller="")
        # and an ``accepted`` event that claims a workflow for alice
        claim = forged(ev.ACCEPTED, "Tclaimed", target="echo", caller="alice")
        await other_role.emit("WCLAIMED", claim, caller="")
        assert await other_role.flush_events()
        mesh = served.gateway.door.mesh
        stored = [*await read_events(mesh, task.id), *await read_events(mesh, "WCLAIMED")]
        assert {(e.signer, e.event.kind) for e in stored if e.signer == "other"} == {
            ("other", ev.COMPLETED),
            ("other", ev.ACCEPTED),
        }

        served.http._transport.app.state.a2a = None  # type: ignore[attr-defined]
        fresh = client_of(alice, card)
        got = await fresh.get_task(GetTaskRequest(id=task.id))
        assert got.status.state == TaskState.TASK_STATE_WORKING  # the forged end is not taken
        while got.status.state != TaskState.TASK_STATE_COMPLETED:
            await asyncio.sleep(0.05)
            got = await fresh.get_task(GetTaskRequest(id=task.id))
        assert result_of(got)["text"] == "REAL"
        with pytest.raises(TaskNotFoundError):
            await fresh.get_task(GetTaskRequest(id="WCLAIMED"))


async def test_what_a_mesh_task_does_not_do_is_a_typed_error(alice: httpx.AsyncClient) -> None:
    client = client_of(alice, await resolve(alice, "/a2a/echo/.well-known/agent-card.json"))
    done = await send(client, message(new_data_part({"text": "x"})))

    async def rpc(method: str, params: dict[str, Any]) -> int:
        body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}
        r = await alice.post("/a2a/echo", json=body, headers={"A2A-Version": "1.0"})
        assert r.status_code == 200, r.text
        code: int = r.json()["error"]["code"]
        return code

    sent = {"message": {"messageId": "m-s", "role": "ROLE_USER", "parts": [{"text": "x"}]}}
    assert await rpc("CancelTask", {"id": done.id}) == -32002  # not cancelable
    assert await rpc("ListTasks", {}) == -32004  # unsupported
    assert await rpc("SendStreamingMessage", sent) == -32004
    hook = {"taskId": done.id, "url": "https://example.com/hook"}
    assert await rpc("CreateTaskPushNotificationConfig", hook) == -32003
    follow = {"message": {**sent["message"], "messageId": "m-f", "taskId": done.id}}
    assert await rpc("SendMessage", follow) == -32602  # one message per task


async def test_a_jwt_caller_is_the_caller_and_a_forged_one_is_refused(jwt_served: Served) -> None:
    async with http_of(jwt_served, token()) as carol:
        card = await resolve(carol, "/a2a/echo/.well-known/agent-card.json")
        task = await send(client_of(carol, card), message(new_data_part({"text": "jwt"})))
        assert result_of(task) == {
            "text": "JWT",
            "caller": "carol",
            "tenant": "globex",
            "scopes": ["kb:read", "orders:write"],
        }
    async with http_of(jwt_served, token(OTHER_RSA)) as forger:
        r = await forger.post("/a2a/echo", json={"jsonrpc": "2.0", "id": 1, "method": "GetTask"})
        assert (r.status_code, r.json()["reason"]) == (401, "bad-signature")
        assert 'error_description="bad-signature"' in r.headers["www-authenticate"]
        with pytest.raises(A2AClientError, match="401"):
            await send(client_of(forger, card), message(new_data_part({"text": "x"})))
    assert len(await audited(jwt_served, "bad-signature")) == 2
