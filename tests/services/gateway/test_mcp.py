"""The gateway's MCP door (/mcp) on servers that enforce the policy, with the ``mcp`` SDK's
own client over Streamable HTTP against the gateway served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from nats.aio.msg import Msg

from jetmesh import KeyStore, MeshClient
from jetmesh import events as ev
from jetmesh.event_log import read_events
from jetmesh.logins import nats_seed_file
from jetmesh.policy import parse_policy
from services.gateway import GatewaySettings, JwtIssuer, create_app
from services.gateway.door import REFUSED
from services.gateway.gateway import Gateway
from services.gateway.mcp import NOT_FINISHED, TASK_META, UNANSWERED, WORKFLOW_META
from services.gateway.settings import AUDIT_WORKFLOW
from tests.harness.secured import SecuredMesh
from tests.services.gateway.agents import echo_agent
from tests.services.gateway.conftest import ALICE_KEY, API_KEYS, BOB_KEY, auth
from tests.services.gateway.test_jwt import AUDIENCE, ISSUER, OTHER_RSA, RSA, Jwks, token

pytestmark = pytest.mark.integration


@dataclass
class Running:
    """The gateway served by uvicorn on a free loopback port."""

    gateway: Gateway
    url: str

    @asynccontextmanager
    async def client(
        self, key: str | None = ALICE_KEY, mode: str = "auto"
    ) -> AsyncIterator[Client]:
        """The SDK's client, its requests carrying ``key`` as the bearer credential."""
        headers = auth(key) if key is not None else {}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(transport, mode=mode) as client:  # type: ignore[arg-type]
                yield client


@asynccontextmanager
async def running(secured: SecuredMesh, settings: GatewaySettings) -> AsyncIterator[Running]:
    gateway = await Gateway(settings, secured.settings).start()
    config = uvicorn.Config(
        create_app(gateway), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Running(gateway, f"http://127.0.0.1:{port}/mcp")
    finally:
        server.should_exit = True
        await task
        await gateway.close()


@pytest.fixture
async def mcp_served(enforced: SecuredMesh) -> AsyncIterator[Running]:
    async with running(enforced, GatewaySettings(api_keys=API_KEYS, max_wait_s=20)) as r:
        yield r


async def audited(gateway: Gateway, reason: str) -> list[ev.Event]:
    mesh = gateway.door.mesh
    assert await mesh.flush_events()
    logged = await read_events(mesh, AUDIT_WORKFLOW)
    return [
        e.event
        for e in logged
        if e.verified
        and e.signer == "gateway"
        and e.event.kind == REFUSED
        and e.event.reason == reason
    ]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_list_tools_shows_exactly_the_exposed_agents_with_their_schemas(
    mcp_served: Running, mode: str
) -> None:
    async with mcp_served.client(mode=mode) as client:
        listed = await client.list_tools()
    assert [t.name for t in listed.tools] == ["echo"]
    tool = listed.tools[0]
    assert tool.description == "shouts back"
    assert tool.input_schema["type"] == "object"
    assert tool.input_schema["required"] == ["text"]
    assert set(tool.input_schema["properties"]) == {"text", "pause_s", "words"}
    assert tool.output_schema is not None
    assert set(tool.output_schema["properties"]) == {"text", "caller", "tenant", "scopes"}


async def test_a_call_returns_the_result_and_runs_as_the_mcp_caller(mcp_served: Running) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    async with mcp_served.client() as client:
        result = await client.call_tool("echo", {"text": "hi"}, progress_callback=on_progress)
    assert not result.is_error, result
    assert [done for done, _ in progress] == [0, 1]
    assert result.structured_content == {
        "text": "HI",
        "caller": "alice",
        "tenant": "acme",
        "scopes": ["kb:read"],
    }
    assert result.meta is not None
    workflow = result.meta[WORKFLOW_META]
    logged = await read_events(mcp_served.gateway.door.mesh, workflow)
    accepted = [e for e in logged if e.verified and e.event.kind == ev.ACCEPTED]
    assert [(e.signer, e.event.caller, e.event.task) for e in accepted] == [
        ("gateway", "alice", result.meta[TASK_META])
    ]
    completed = [e for e in logged if e.verified and e.event.kind == ev.COMPLETED]
    assert [e.signer for e in completed] == ["echo"]
    assert all(e.identity is not None and e.identity.subject == "alice" for e in completed)


async def test_a_failure_is_a_tool_error_naming_its_reason(mcp_served: Running) -> None:
    async with mcp_served.client(BOB_KEY) as client:
        result = await client.call_tool("echo", {"text": "no"})
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["reason"] == "rejected-by-handler"
    assert "said-no" in result.structured_content["detail"]


async def test_a_body_failing_the_schema_is_a_tool_error_naming_the_field(
    mcp_served: Running,
) -> None:
    async with mcp_served.client() as client:
        result = await client.call_tool("echo", {"text": 5})
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["reason"] == "body-rejected"
    assert result.structured_content["detail"].startswith("text:")
    refused = await audited(mcp_served.gateway, "body-rejected")
    assert [(e.caller, e.target) for e in refused] == [("acme/alice", "echo")]


@pytest.mark.parametrize("tool", ["other", "nobody", "echo.task"])
async def test_a_tool_outside_the_exposed_agents_is_an_error(
    mcp_served: Running, tool: str
) -> None:
    async with mcp_served.client() as client:
        with pytest.raises(MCPError, match="unknown-agent"):
            await client.call_tool(tool, {"text": "hi"})
    refused = await audited(mcp_served.gateway, "unknown-agent")
    assert [(e.caller, e.target) for e in refused] == [("acme/alice", tool)]


@pytest.mark.parametrize(
    ("key", "reason"), [(None, "missing-credentials"), ("jmk_forged", "unknown-api-key")]
)
async def test_no_or_a_bad_token_is_refused_before_mcp(
    mcp_served: Running, key: str | None, reason: str
) -> None:
    with pytest.raises(BaseExceptionGroup) as raised:
        async with mcp_served.client(key) as client:
            await client.list_tools()
    assert raised.group_contains(MCPError, match="error response", depth=2)

    headers = {"Accept": "application/json, text/event-stream"} | (auth(key) if key else {})
    async with httpx.AsyncClient() as http:
        r = await http.post(mcp_served.url, json=_list_request(), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="jetmesh"')
    assert r.json()["reason"] == reason
    assert await audited(mcp_served.gateway, reason)


async def test_the_callers_rate_limit_holds_on_mcp(enforced: SecuredMesh) -> None:
    settings = GatewaySettings(api_keys=API_KEYS, rate_per_s=0.01, burst=2)
    headers = {"Accept": "application/json, text/event-stream"} | auth(ALICE_KEY)
    async with running(enforced, settings) as r, httpx.AsyncClient() as http:
        answers = [await http.post(r.url, json=_list_request(), headers=headers) for _ in range(3)]
        other = await http.post(r.url, json=_list_request(), headers=headers | auth(BOB_KEY))
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["reason"] == "rate-limited"
        assert int(answers[2].headers["retry-after"]) >= 1
        assert other.status_code == 200
        assert await audited(r.gateway, "rate-limited")


def _list_request() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


async def test_no_result_within_the_wait_is_a_tool_error_naming_the_workflow(
    enforced: SecuredMesh,
) -> None:
    settings = GatewaySettings(api_keys=API_KEYS, max_wait_s=0.1)
    async with running(enforced, settings) as r, r.client() as client:
        result = await client.call_tool("echo", {"text": "slow", "pause_s": 1.0})
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["reason"] == NOT_FINISHED
    assert result.meta is not None
    workflow = result.meta[WORKFLOW_META]
    assert f"/v1/workflows/{workflow}" in result.structured_content["detail"]


async def refused_subscription(errors: list[Exception], subject: str) -> bool:
    """Whether the servers said the subscription to ``subject`` is a permissions violation
    (they name the subject in lower case)."""
    for _ in range(100):
        if any(f'subscription to "{subject.lower()}"' in str(e).lower() for e in errors):
            return True
        await asyncio.sleep(0.02)
    return False


def _stolen_keys(source: Path, into: Path, role: str) -> KeyStore:
    """``role``'s secrets only (signing key, certificate, NATS seed), and the roots."""
    wanted = [
        Path(f"{role}.key"),
        Path(f"{role}.cert"),
        nats_seed_file(Path(), role),
        *(p.relative_to(source) for p in (source / "roots").glob("*.pub")),
    ]
    for relative in wanted:
        (into / relative).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(source / relative, into / relative)
    return KeyStore(into)


async def test_another_role_cannot_answer_for_the_exposed_agent(
    enforced: SecuredMesh, mcp_served: Running
) -> None:
    """With ``other``'s secrets one cannot answer ``$SRV.INFO.echo`` (the servers refuse
    the subscription): the tools' descriptions and schemas are echo's own."""
    into = enforced.settings.resolved_keys_dir.parent / "stolen-other"
    store = _stolen_keys(enforced.keys.directory, into, "other")
    settings = enforced.settings.model_copy(update={"keys_dir": into})
    mesh = MeshClient(settings, store.identity("other"), roots=store.roots())
    await mesh.start()
    try:
        errors: list[Exception] = []
        mesh.error_listeners.append(errors.append)
        forged = {"name": "echo", "description": "forged", "endpoints": []}

        async def answer(msg: Msg) -> None:
            await msg.respond(json.dumps(forged).encode())

        subject = "$SRV.INFO.echo"
        await mesh.nc.subscribe(subject, cb=answer)
        await mesh.nc.flush()
        assert await refused_subscription(errors, subject)
        async with mcp_served.client() as client:
            listed = await client.list_tools()
        assert [(t.name, t.description) for t in listed.tools] == [("echo", "shouts back")]
    finally:
        await mesh.close()


async def test_an_exposed_agent_nobody_serves_is_listed_as_unknown_and_does_not_finish(
    tmp_path: Path,
) -> None:
    calls = {"ingress": True, "calls": ["echo", "idle"]}
    policy = {"roles": {"gateway": calls, "echo": {}, "idle": {}}}
    secured = SecuredMesh(tmp_path / "state", parse_policy(policy))
    await asyncio.to_thread(secured.up)
    try:
        await secured.start_replicas(echo_agent())
        settings = GatewaySettings(api_keys=API_KEYS, max_wait_s=0.2)
        async with running(secured, settings) as r, r.client() as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            result = await client.call_tool("idle", {"anything": 1})
        assert sorted(listed) == ["echo", "idle"]
        assert listed["idle"].description == f"idle: {UNANSWERED}"
        assert listed["idle"].input_schema == {"type": "object"}
        assert listed["idle"].output_schema is None
        assert result.is_error
        assert result.structured_content is not None
        assert result.structured_content["reason"] == NOT_FINISHED
    finally:
        try:
            await secured.aclose()
        finally:
            await asyncio.to_thread(secured.down)


@pytest.fixture
def issuer_keys() -> Iterator[Jwks]:
    """The issuer's JWKS on loopback, with ``k1`` the test's RSA key."""
    served = Jwks()
    served.publish("k1", RSA)
    served.thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        served.thread.join()


@pytest.mark.parametrize("good", [True, False])
async def test_a_jwt_caller_calls_as_its_claims_and_a_bad_jwt_is_refused(
    enforced: SecuredMesh, issuer_keys: Jwks, good: bool
) -> None:
    issuer = JwtIssuer(issuer=ISSUER, audience=AUDIENCE, jwks_url=issuer_keys.url, leeway_s=0)
    settings = GatewaySettings(jwt=issuer, max_wait_s=20)
    credential = token() if good else token(OTHER_RSA)  # signed by a key not in the JWKS's k1
    async with running(enforced, settings) as r:
        if not good:
            with pytest.raises(BaseExceptionGroup):
                async with r.client(credential) as client:
                    await client.list_tools()
            assert await audited(r.gateway, "bad-signature")
            return
        async with r.client(credential) as client:
            result = await client.call_tool("echo", {"text": "jwt"})
    assert result.structured_content == {
        "text": "JWT",
        "caller": "carol",
        "tenant": "globex",
        "scopes": ["kb:read", "orders:write"],
    }


async def test_a_request_body_over_the_gateways_limit_is_a_413(mcp_served: Running) -> None:
    limit = mcp_served.gateway.mesh_settings.max_payload_bytes // 2
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x" * limit}},
    }
    headers = {"Accept": "application/json, text/event-stream"} | auth(ALICE_KEY)
    async with httpx.AsyncClient() as http:
        r = await http.post(mcp_served.url, json=call, headers=headers)
    assert r.status_code == 413
