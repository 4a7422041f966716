"""The gateway's MCP door: each agent the gateway exposes is an MCP tool, at ``/mcp``.

An MCP server (the ``mcp`` SDK's low-level :class:`~mcp.server.Server`, Streamable HTTP,
stateless) in the gateway's app. Every HTTP request to ``/mcp`` is authenticated as the
gateway's other routes are (``Authorization: Bearer`` with an API key or a JWT; without
one, or with a bad one, a 401 problem with ``WWW-Authenticate: Bearer``) and counted in the
caller's rate limit. Then:

``tools/list``
    one tool per agent the gateway's role may send tasks to (the literal ``calls`` of its
    certificate): ``name`` the agent, ``description`` the one its replicas publish
    (``$SRV.INFO.<agent>``), ``inputSchema`` the JSON Schema of the type it accepts,
    ``outputSchema`` the one of its result (as the gateway's
    :class:`~services.gateway.directory.Directory` reads them).
``tools/call``
    the arguments are the task's body: the workflow starts as the gateway's HTTP route
    starts it (:meth:`~services.gateway.door.Door.start`: the gateway mints the caller's
    token, the chain starts at the gateway) and the call waits up to ``max_wait_s`` for
    its result: the result as structured content, or a tool error (``isError``) that
    names the reason. A call the gateway refuses (a body the agent's schema rejects, a
    task not stored, no result in time) is audited like the gateway's HTTP refusals; a
    tool the gateway does not expose is a protocol error (invalid params), audited too.

Example:
    >>> door = McpDoor(gateway)                                  # doctest: +SKIP
    >>> app.router.routes.append(door.route())                   # doctest: +SKIP
    >>> async with door.running(): ...                           # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .auth import HttpCaller
from .directory import object_schema
from .gateway import Gateway
from .problems import PROBLEM_JSON, Problem

PATH = "/mcp"
"""Where the gateway's app serves MCP."""
CALLER_KEY = "jetmesh.gateway.caller"
"""The ASGI scope key that carries the authenticated caller to the tool handlers."""
WORKFLOW_META = "jetmesh/workflow"
TASK_META = "jetmesh/task"
"""The ``_meta`` keys of a tool result that name the workflow and its root task."""
UNANSWERED = "no replica answered; its input schema is not known"
"""The description of an exposed agent whose replicas did not answer ``$SRV.INFO``."""
NOT_FINISHED = "not-finished"
"""The reason of a tool error when the workflow did not end within ``max_wait_s``."""
_encoder = msgspec.json.Encoder(order="sorted")
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _caller(ctx: ServerRequestContext[Any, Any]) -> HttpCaller:
    request = ctx.request
    caller = request.scope.get(CALLER_KEY) if request is not None else None
    if not isinstance(caller, HttpCaller):  # the door authenticates every request first
        raise MCPError(INVALID_PARAMS, "the request is not authenticated")
    return caller


class McpDoor:
    """The gateway's MCP server, an ASGI app: authenticates, limits, then serves MCP."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.server: Server[Any] = Server(
            "jetmesh-gateway",
            version="1",
            description="the agents of a jetmesh mesh, each a tool (docs/interop.md)",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._manager: StreamableHTTPSessionManager | None = None

    def route(self) -> Route:
        """The app's route to this door, at :data:`PATH` (every method)."""
        return Route(PATH, self, include_in_schema=False)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve MCP requests within this block (the app's lifespan holds it)."""
        manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,
            max_request_body_size=self.gateway.mesh_settings.max_payload_bytes // 2,
        )
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            if self._manager is None or not self.gateway.ready:
                raise Problem("not-ready", "the MCP door is not running")
            await self._admit(scope)
        except Problem as problem:
            await self._refuse(problem, scope, receive, send)
            return
        await self._manager.handle_request(scope, receive, send)

    async def _admit(self, scope: Scope) -> None:
        """Put the request's caller in ``scope``, if within its rate."""
        gateway = self.gateway
        caller = await gateway.auth.caller(Headers(scope=scope).get("authorization"))
        scope[CALLER_KEY] = caller
        wait = gateway.limits.take(caller.key)
        if wait > 0:
            raise Problem(
                "rate-limited",
                f"over {gateway.settings.rate_per_s:g} requests/s for {caller.key}",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    async def _refuse(self, problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``problem`` as the gateway's routes do, with ``WWW-Authenticate`` on a
        401 (RFC 6750, as MCP's authorization asks), and audit it."""
        caller = scope.get(CALLER_KEY)
        where = f"{scope.get('method', '')} {PATH}"
        if self.gateway.ready:
            await self.gateway.door.audit(problem, where, caller, None)
        headers = dict(problem.headers)
        if problem.status == 401:
            challenge = 'Bearer realm="jetmesh"'
            if problem.reason != "missing-credentials":
                challenge += f', error="invalid_token", error_description="{problem.reason}"'
            headers["WWW-Authenticate"] = challenge
        response = JSONResponse(
            problem.body(PATH), problem.status, headers=headers, media_type=PROBLEM_JSON
        )
        await response(scope, receive, send)

    # The tools.

    async def tool(self, agent: str) -> Tool:
        """``agent`` as an MCP tool."""
        described = await self.gateway.directory.describe(agent)
        objects = [o for o in map(object_schema, described.inputs.values()) if o is not None]
        if len(objects) == 1:
            input_schema = objects[0]
        elif objects:
            input_schema = {"type": "object", "anyOf": objects}
        else:
            input_schema = _ANY_OBJECT
        output = described.output_schema
        return Tool(
            name=agent,
            description=described.description
            or (f"the agent {agent}" if described.answered else f"{agent}: {UNANSWERED}"),
            input_schema=input_schema,
            output_schema=object_schema(output) if output is not None else None,
        )

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        _caller(ctx)
        tools = await asyncio.gather(*(self.tool(a) for a in self.gateway.directory.exposed()))
        return ListToolsResult(tools=list(tools))

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams
    ) -> CallToolResult:
        caller = _caller(ctx)
        agent = params.name
        door = self.gateway.door
        where = f"MCP tools/call {agent}"
        if agent not in self.gateway.directory.exposed():
            problem = Problem("unknown-agent", f"the gateway exposes no tool {agent!r}")
            await door.audit(problem, where, caller, agent)
            raise MCPError(INVALID_PARAMS, f"{problem.reason}: {problem.detail}")
        body = _encoder.encode(params.arguments or {})
        await ctx.session.report_progress(0, 1, f"starting a workflow at {agent}")
        wait_s = self.gateway.settings.max_wait_s
        try:
            started = await door.start(caller, agent, body, type_="", key=None, wait_s=wait_s)
        except Problem as problem:
            await door.audit(problem, where, caller, agent)
            return _error(problem.reason, problem.detail, problem.workflow)
        outcome = started.outcome
        if outcome is None:  # not a refusal: the workflow goes on
            detail = f"no result within {wait_s:g}s; follow GET /v1/workflows/{started.workflow}"
            return _error(NOT_FINISHED, detail, started.workflow, started.task)
        await ctx.session.report_progress(1, 1, f"workflow {started.workflow} ended")
        ids = {WORKFLOW_META: started.workflow, TASK_META: started.task}
        if outcome["status"] != "completed":
            error = outcome.get("error") or {}
            return _error(
                str(error.get("reason") or "failed"),
                str(error.get("message") or ""),
                started.workflow,
                started.task,
            )
        result = outcome.get("result")
        return CallToolResult(
            content=[TextContent(type="text", text=_encoder.encode(result).decode())],
            structured_content=result if isinstance(result, dict) else {"result": result},
            is_error=False,
            _meta=ids,
        )


def _error(
    reason: str, detail: str, workflow: str | None, task: str | None = None
) -> CallToolResult:
    """A tool error result that names ``reason`` (and the workflow, if one started)."""
    meta = {WORKFLOW_META: workflow} if workflow else {}
    if task:
        meta[TASK_META] = task
    return CallToolResult(
        content=[TextContent(type="text", text=f"{reason}: {detail}")],
        structured_content={"reason": reason, "detail": detail},
        is_error=True,
        _meta=meta or None,
    )
