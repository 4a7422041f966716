"""A remote MCP server's tools through the tool gateway, on servers that enforce the policy.

The MCP server is the SDK's own (streamable HTTP, run by uvicorn in a thread on a free
loopback port): it answers only the bearer token it holds, and counts what it is asked.
The gateway (in this process) registers its tools as ``docs-*`` with
:class:`~jetmesh.toolgate.McpTools` and holds the token in its secrets file; the agent that
calls them, ``researcher``, is a ``jetmesh run`` process of its own, so a test can look
at everything it holds (its environment, its log, its answers) and at every event of the
workflow: the token is in none of them, only its fingerprint is in the events.

``rogue`` may call the gateway and has no tools: it sends a ``ToolRequest`` straight to
the gateway, as a compromised role would.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from jetmesh import Agent, CallFailed, ConfigError, Context, ScopeDenied, ToolRefused
from jetmesh.embedded import free_port
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent, read_events
from jetmesh.policy import load_policy
from jetmesh.processes import AgentProcess
from jetmesh.runtime.context import Context as StepContext
from jetmesh.toolgate import (
    TOOLGATE,
    Credentials,
    McpToolError,
    McpTools,
    McpUnauthorized,
    ToolCall,
    Toolgate,
    ToolRecord,
    ToolRegistry,
    ToolRequest,
    ToolResult,
)
from tests.harness.mesh import REPO_ROOT, kinds
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

POLICY = """
[roles.cli]
ingress = true
calls = ["researcher", "rogue"]

[roles.researcher]
calls = ["toolgate"]
scopes = ["docs:read"]
tools.docs-search = { scope = "docs:read" }
tools.docs-outline = { scope = "docs:read" }
tools.docs-broken = { scope = "docs:read" }

[roles.rogue]
calls = ["toolgate"]
"""
"""``researcher`` may use three of the server's tools, not ``docs-delete``; ``rogue`` none."""

SCOPES = ["docs:read"]
RESEARCHER = "tests.toolgate.test_mcp_tools:researcher"


class Ask(msgspec.Struct, frozen=True, kw_only=True):
    """Call ``tool`` with ``args``: through ``ctx.tool``, or (``raw``) straight to the
    gateway, past the agent's own checks."""

    __mesh_type__ = "test.McpAsk/1"

    tool: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    raw: bool = False


class Answer(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.McpAnswer/1"

    outcome: str
    """``ok`` or the refusal's code."""
    value: Any = None
    """The tool's result, or the refusal's class and detail."""


def asker(name: str) -> Agent:
    agent = Agent(name, scopes=SCOPES if name == "researcher" else [])

    @agent.handler
    async def ask(job: Ask, ctx: Context) -> Answer:
        try:
            if job.raw:
                request = ToolRequest(tool=job.tool, args=job.args)
                got = await ctx.call(TOOLGATE, request, returns=ToolResult)
                return Answer("ok", msgspec.json.decode(got.value))
            raw = await ctx.tool(job.tool, job.args, returns=msgspec.Raw)
            return Answer("ok", msgspec.json.decode(raw))
        except (ToolRefused, ScopeDenied, CallFailed) as exc:
            return Answer(exc.reason, f"{type(exc).__name__}: {exc}")

    return agent


researcher = asker("researcher")
"""The agent of the tests' ``jetmesh run`` process."""


class Found(BaseModel):
    """``search``'s result: structured content."""

    query: str
    hits: list[str]


class DocsServer:
    """The SDK's MCP server with four tools, behind a bearer check: what it saw, counted."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: Counter[str] = Counter()
        """Tool invocations by MCP tool name."""
        self.bearers: list[str] = []
        """The bearer token of every HTTP request, in order."""
        self.refused = 0
        """HTTP requests answered 401."""

        server = MCPServer("docs")

        @server.tool(description="Search the docs.\nReturns the matching pages.")
        def search(query: str) -> Found:
            self.calls["search"] += 1
            return Found(query=query, hits=[f"{query}.md", f"{query}-faq.md"])

        @server.tool(description="A page's outline, as text.", structured_output=False)
        def outline(page: str) -> str:
            self.calls["outline"] += 1
            return f"# {page}\n## Why\n## How"

        @server.tool(description="Always fails.")
        def broken(query: str) -> str:
            self.calls["broken"] += 1
            raise ToolError(f"the index for {query!r} is being rebuilt")

        @server.tool(name="pages.list", description="Every page.")
        def pages() -> list[str]:
            self.calls["pages.list"] += 1
            return ["refunds.md"]

        @server.tool(description="Deletes a page.")
        def delete(page: str) -> str:
            self.calls["delete"] += 1
            return f"deleted {page}"

        self.inner = server.streamable_http_app()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"authorization", b"").decode()
            bearer = sent.removeprefix("Bearer ")
            self.bearers.append(bearer)
            if bearer != self.token:
                self.refused += 1
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.inner(scope, receive, send)

    def start(self) -> DocsServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert self._thread.is_alive(), "the MCP server stopped"
            assert time.monotonic() < deadline, "the MCP server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
            assert not self._thread.is_alive(), "the MCP server did not stop"


class OnceDying(Toolgate):
    """A gateway that fails right after a run of a tool whose query says ``die-once``
    (once per workflow): the run is recorded in its ledger, the task is not done, so the
    task comes back, as after a gateway that died after the call."""

    died: set[str]

    async def handle(self, request: ToolRequest, ctx: StepContext) -> ToolResult:
        result = await super().handle(request, ctx)
        if request.args.get("query") == "die-once" and ctx.workflow not in self.died:
            self.died.add(ctx.workflow)
            raise RuntimeError("the gateway stops after the call, before its reply")
        return result


@dataclass
class Docs:
    mesh: SecuredMesh
    server: DocsServer
    tools: McpTools
    secrets: Path
    agent: AgentProcess
    log: Path

    async def ask(self, role: str, ask: Ask, workflow: str = "") -> tuple[str, Answer]:
        client = await self.mesh.ingress()
        workflow = workflow or new_id()
        token = client.mint_token("alice", scopes=SCOPES)
        answer = await client.request(
            role, ask, token=token, returns=Answer, workflow=workflow, timeout=30
        )
        return workflow, answer

    async def events(self, workflow: str, until: Any) -> list[LoggedEvent]:
        client = await self.mesh.ingress()
        deadline = time.monotonic() + 15
        while True:
            logged = await read_events(client, workflow, timeout=2.0)
            if until(logged) or time.monotonic() > deadline:
                return logged
            await asyncio.sleep(0.05)

    def write_secrets(self, search: str) -> None:
        token = self.server.token
        self.secrets.write_text(
            f'docs = "{token}"\ndocs-search = "{search}"\n'
            f'docs-outline = "{token}"\ndocs-broken = "{token}"\ndocs-delete = "{token}"\n'
        )


def record(event: LoggedEvent) -> ToolRecord:
    assert event.event.body is not None
    return msgspec.json.decode(event.event.body.value, type=ToolRecord)


@pytest.fixture(scope="module")
def server() -> Iterator[DocsServer]:
    started = DocsServer("mcp-" + secrets.token_hex(16)).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
async def docs(server: DocsServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Docs]:
    home = Path(tmp_path_factory.mktemp("mcp"))
    policy_file = home / "policy.toml"
    policy_file.write_text(POLICY)
    policy = load_policy(policy_file)
    mesh = SecuredMesh(home / "state", policy)
    mesh.settings = mesh.settings.model_copy(update={"policy_file": policy_file})
    await asyncio.to_thread(mesh.up)
    secrets_file = home / "secrets.toml"
    log = home / "researcher.log"
    agent = AgentProcess([RESEARCHER], mesh.settings, log_file=log)
    try:
        registry = ToolRegistry()
        credentials = Credentials(secrets_file, env={})
        tools = McpTools(server.url, prefix="docs-", credentials=credentials)
        built = Docs(mesh, server, tools, secrets_file, agent, log)
        built.write_secrets(server.token)
        secrets_file.chmod(0o600)
        assert sorted(await tools.start(registry)) == [
            "docs-broken",
            "docs-delete",
            "docs-outline",
            "docs-pages_list",
            "docs-search",
        ]
        gateway = OnceDying(policy, registry, credentials)
        gateway.died = set()
        await mesh.start_replicas(gateway.agent(), asker("rogue"))
        assert Path.cwd() == REPO_ROOT, "jetmesh run imports the tests from here"
        await asyncio.to_thread(agent.start)
        yield built
    finally:
        try:
            agent.stop()
            await mesh.aclose()
        finally:
            await asyncio.to_thread(mesh.down)


async def test_an_agent_calls_an_mcp_tool_and_never_holds_its_credential(docs: Docs) -> None:
    before = docs.server.calls["search"]
    seen = len(docs.server.bearers)
    workflow, answer = await docs.ask(
        "researcher", Ask(tool="docs-search", args={"query": "refunds"})
    )
    assert answer == Answer("ok", {"query": "refunds", "hits": ["refunds.md", "refunds-faq.md"]})
    assert docs.server.calls["search"] == before + 1
    assert docs.server.bearers[seen:], "the server was asked"
    assert set(docs.server.bearers[seen:]) == {docs.server.token}, "with the credential"

    logged = await docs.events(workflow, lambda got: bool(kinds(got, "completed")))
    (ran,) = kinds(logged, "tool")
    got = record(ran)
    assert (got.tool, got.sender, got.caller, got.outcome) == (
        "docs-search",
        "researcher",
        "alice",
        "ok",
    )
    assert ran.signer == TOOLGATE
    assert ran.verified
    fingerprint = Credentials(docs.secrets).get("docs-search").fingerprint  # type: ignore[union-attr]
    assert got.credential == fingerprint
    everything = b"".join(msgspec.json.encode(e.event) for e in logged)
    assert fingerprint.encode() in everything
    assert docs.server.token.encode() not in everything, "the credential is in no event"

    assert docs.agent.pid is not None
    environ = await asyncio.to_thread(Path(f"/proc/{docs.agent.pid}/environ").read_bytes)
    assert b"JETMESH_POLICY_FILE" in environ, "the agent process's own environment"
    assert docs.server.token.encode() not in environ
    assert b"TOOL_DOCS" not in environ, "no tool credential variable at all"
    assert docs.server.token not in await asyncio.to_thread(docs.log.read_text)


async def test_a_text_result_is_the_tools_text(docs: Docs) -> None:
    _, answer = await docs.ask("researcher", Ask(tool="docs-outline", args={"page": "refunds"}))
    assert answer == Answer("ok", "# refunds\n## Why\n## How")


async def test_the_tools_input_schema_is_kept(docs: Docs) -> None:
    search = docs.tools.tools["docs-search"]
    assert (search.remote, search.description) == ("search", "Search the docs.")
    assert search.input_schema["required"] == ["query"]
    assert search.input_schema["properties"]["query"]["type"] == "string"
    pages = docs.tools.tools["docs-pages_list"]
    assert pages.remote == "pages.list", "a tool name holds no '.': it becomes '_'"


async def test_a_wrong_credential_is_refused_by_the_server_and_recorded(docs: Docs) -> None:
    wrong = "mcp-" + secrets.token_hex(16)
    docs.write_secrets(search=wrong)
    before, refused = docs.server.calls["search"], docs.server.refused
    try:
        workflow, answer = await docs.ask(
            "researcher", Ask(tool="docs-search", args={"query": "refunds"})
        )
    finally:
        docs.write_secrets(search=docs.server.token)
    assert answer.outcome == "mcp-unauthorized"
    assert answer.value.startswith("McpUnauthorized: ")
    assert docs.server.refused > refused
    assert docs.server.bearers[-1] == wrong
    assert docs.server.calls["search"] == before, "the tool did not run"

    logged = await docs.events(workflow, lambda got: bool(kinds(got, "tool-refused")))
    (refusal,) = kinds(logged, "tool-refused")
    got = record(refusal)
    assert (refusal.event.reason, got.outcome, got.tool) == (
        "mcp-unauthorized",
        "mcp-unauthorized",
        "docs-search",
    )
    assert "HTTP 401" in refusal.event.detail
    assert (
        got.credential
        == Credentials(None, env={"JETMESH_TOOL_X_CREDENTIAL": wrong}).get("x").fingerprint
    )  # type: ignore[union-attr]
    everything = b"".join(msgspec.json.encode(e.event) for e in logged)
    assert wrong.encode() not in everything
    assert not kinds(logged, "tool"), "no run recorded"

    _, again = await docs.ask("researcher", Ask(tool="docs-search", args={"query": "after"}))
    assert again.outcome == "ok", "the gateway still serves"


async def test_an_mcp_tool_error_is_a_typed_refusal(docs: Docs) -> None:
    before = docs.server.calls["broken"]
    workflow, answer = await docs.ask(
        "researcher", Ask(tool="docs-broken", args={"query": "refunds"})
    )
    assert answer.outcome == "mcp-tool-error"
    assert answer.value.startswith("McpToolError: ")
    assert "being rebuilt" in answer.value
    assert docs.server.calls["broken"] == before + 1, "run once, not retried"
    logged = await docs.events(workflow, lambda got: bool(kinds(got, "tool-refused")))
    (refusal,) = kinds(logged, "tool-refused")
    assert record(refusal).outcome == "mcp-tool-error"
    assert record(refusal).credential.startswith("sha256:")


async def test_a_tool_not_granted_is_refused_before_the_server_is_asked(docs: Docs) -> None:
    asked = len(docs.server.bearers)
    _, answer = await docs.ask("researcher", Ask(tool="docs-delete", args={"page": "x"}))
    assert answer.outcome == "scope-denied", "the agent's own check, from the policy"
    raw_workflow, raw = await docs.ask(
        "researcher", Ask(tool="docs-delete", args={"page": "x"}, raw=True)
    )
    assert raw.outcome == "tool-not-granted", "the gateway's check"
    _, rogue = await docs.ask("rogue", Ask(tool="docs-search", args={"query": "x"}, raw=True))
    assert rogue.outcome == "tool-not-granted"
    assert docs.server.calls["delete"] == 0
    assert len(docs.server.bearers) == asked, "the MCP server was not asked at all"
    logged = await docs.events(raw_workflow, lambda got: bool(kinds(got, "tool-refused")))
    (refusal,) = kinds(logged, "tool-refused")
    assert refusal.event.reason == "tool-not-granted"
    assert record(refusal).credential == "", "no credential was taken"


async def test_a_redelivered_step_does_not_call_the_mcp_tool_again(docs: Docs) -> None:
    before = docs.server.calls["search"]
    workflow, answer = await docs.ask(
        "researcher", Ask(tool="docs-search", args={"query": "die-once"})
    )
    assert answer == Answer("ok", {"query": "die-once", "hits": ["die-once.md", "die-once-faq.md"]})
    assert docs.server.calls["search"] == before + 1, "called once for the step"
    logged = await docs.events(workflow, lambda got: bool(kinds(got, "completed")))
    ran = kinds(logged, "tool")
    assert [record(e).outcome for e in ran] == ["ok", "recorded"]
    assert "from the record" in ran[1].event.detail
    assert kinds(logged, "retried"), "the gateway's task came back"


async def test_a_server_that_refuses_the_listing_is_a_config_error(docs: Docs) -> None:
    wrong = Credentials(None, env={"JETMESH_TOOL_DOCS_CREDENTIAL": "not-it"})
    with pytest.raises(ConfigError, match="HTTP 401"):
        await McpTools(docs.server.url, prefix="docs-", credentials=wrong).start(ToolRegistry())
    with pytest.raises(ConfigError, match="no credential 'docs'"):
        await McpTools(
            docs.server.url, prefix="docs-", credentials=Credentials(None, env={})
        ).start(ToolRegistry())
    with pytest.raises(ConfigError, match="not the start of a tool name"):
        McpTools(docs.server.url, prefix="docs.", credentials=wrong)
    nobody = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(ConfigError, match="listing the tools of"):
        await McpTools(nobody, prefix="docs-", credentials=wrong).start(ToolRegistry())


async def test_only_and_refresh_register_what_is_asked(docs: Docs) -> None:
    credentials = Credentials(None, env={"JETMESH_TOOL_DOCS_CREDENTIAL": docs.server.token})
    registry = ToolRegistry()
    registry.add("docs-outline", _unused, needs_credential=False)
    tools = McpTools(
        docs.server.url,
        prefix="docs-",
        credentials=credentials,
        only={"search", "outline"},
        idempotent={"search"},
    )
    assert await tools.start(registry) == ["docs-search"], "docs-outline was taken already"
    search = registry.get("docs-search")
    assert search is not None
    assert search.idempotent, "as configured"
    assert search.needs_credential
    assert await tools.refresh(registry) == []
    assert sorted(tools.tools) == ["docs-search"], "only the tools it registered"


async def _unused(call: ToolCall) -> Any:
    raise AssertionError("not called")


def test_the_refusals_are_the_gateways_typed_refusals() -> None:
    from jetmesh.runtime.tool_calls import REFUSALS

    assert issubclass(McpUnauthorized, McpToolError)
    assert issubclass(McpToolError, ToolRefused)
    assert REFUSALS["mcp-unauthorized"] is McpUnauthorized
    assert REFUSALS["mcp-tool-error"] is McpToolError
