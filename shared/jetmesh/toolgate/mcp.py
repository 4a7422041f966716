"""A remote MCP server's tools as tool gateway tools: the server's credential stays in the
gateway, as every tool's does.

:class:`McpTools` lists the tools of an MCP server (streamable HTTP) and registers each
in a :class:`~jetmesh.toolgate.ToolRegistry` under a prefixed name (``docs-`` and the
MCP tool ``search``: ``docs-search``; a name the subject grammar does not allow has each
other character as ``_``). Each tool's run opens a session to the server with the tool's
credential as ``Authorization: Bearer <credential>`` (the gateway's
:class:`~jetmesh.toolgate.Credentials`, looked up by the tool's gateway name, injected
for that call only: the agent never holds it, and the ``tool`` event carries its
fingerprint), calls the MCP tool with the call's arguments, and returns the result's
structured content, or its text. A run is one session (opened, called, closed), so a
rotated credential takes effect on the next call.

An MCP tool that answers with an error (``isError``) or a protocol error raises
:class:`McpToolError`; a server that refuses the credential (HTTP 401 or 403) raises
:class:`McpUnauthorized`. Both are :class:`~jetmesh.ToolRefused`: the gateway records a
``tool-refused`` event with the code, and the agent's ``ctx.tool`` raises the same class.

Every tool is run at most once per request step by the gateway's ledger. A tool declares
``idempotent`` or ``find`` only as configured here (by default neither: a run left in
doubt is refused as ``tool-in-doubt`` for a person, as for any tool that declares
nothing). The tool list is fetched by :meth:`McpTools.start` (and again by
:meth:`McpTools.refresh`); each tool's input schema is kept in :attr:`McpTools.tools`.

The ``mcp`` SDK is in the optional ``gateway`` extra (``pip install jetmesh[gateway]``):
it is imported only inside this module's functions, and only when a server is asked;
without it they raise :class:`~jetmesh.ConfigError`.

Example:
    >>> tools = ToolRegistry()                                              # doctest: +SKIP
    >>> docs = McpTools("https://docs.example/mcp", prefix="docs-",
    ...                 credentials=credentials, idempotent={"search"})     # doctest: +SKIP
    >>> await docs.start(tools)   # lists the server's tools, registers docs-search, ...
    >>> gate = Toolgate(policy, tools, credentials)                         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Collection, Generator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .._exceptions import ConfigError, McpToolError, McpUnauthorized, ToolRefused
from ..addresses import TOKEN_RE
from .credentials import Credential, Credentials
from .registry import FindFn, ToolCall, ToolFn, ToolRegistry

log = logging.getLogger("jetmesh.toolgate")

DEFAULT_TIMEOUT_S = 30.0
"""How long a call (and a listing) may take, connecting included."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class McpTool:
    """One tool of the server, as listed."""

    name: str
    """The tool gateway's name for it (the prefix and the MCP name)."""
    remote: str
    """Its name on the MCP server."""
    description: str
    input_schema: dict[str, Any]
    """The JSON Schema of its arguments, as the server lists it."""


def _sdk() -> tuple[ModuleType, ModuleType]:
    """The ``mcp`` client and ``httpx2`` modules, or a ConfigError naming the extra."""
    try:
        import httpx2
        import mcp.client.streamable_http
    except ImportError as exc:
        raise ConfigError(
            f"MCP tools need the mcp SDK: pip install 'jetmesh[gateway]' ({exc})"
        ) from None
    return mcp.client.streamable_http, httpx2


class McpTools:
    """The tools of one MCP server, registered in a tool registry."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        credentials: Credentials,
        list_credential: str = "",
        idempotent: Collection[str] = (),
        find: Mapping[str, FindFn] | None = None,
        only: Collection[str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """
        Args:
            url: the server's streamable HTTP endpoint (``https://host/mcp``).
            prefix: put before each MCP tool's name for its gateway name (``docs-``).
            credentials: the gateway's credentials (those the :class:`Toolgate` gets):
                each tool's is looked up by its gateway name.
            list_credential: the credential's name for listing the tools (by default
                ``prefix`` without a trailing ``-`` or ``_``).
            idempotent: MCP tool names whose server does a call once per idempotency
                key (or that only read): a run left in doubt may be run again.
            find: MCP tool name to a :data:`~jetmesh.toolgate.FindFn` that settles a run
                left in doubt.
            only: register only these MCP tools (None: all the server lists).
            timeout_s: per call and per listing.

        Raises:
            ConfigError: ``prefix`` or ``list_credential`` cannot start a tool name.
        """
        self.url = url
        self.prefix = prefix
        self.credentials = credentials
        self.list_credential = list_credential or prefix.rstrip("-_")
        if not TOKEN_RE.match(prefix) or not TOKEN_RE.match(self.list_credential):
            raise ConfigError(f"MCP tools' prefix {prefix!r} is not the start of a tool name")
        self.idempotent = frozenset(idempotent)
        self.find = dict(find or {})
        self.only = frozenset(only) if only is not None else None
        self.timeout_s = timeout_s
        self.tools: dict[str, McpTool] = {}
        """The registered tools by gateway name, with their input schemas."""

    async def start(self, registry: ToolRegistry) -> list[str]:
        """List the server's tools and register each in ``registry``: the gateway names
        registered (a name another tool has taken is left out, logged).

        Raises:
            ConfigError: no credential for the listing, the server refused it, or it
                cannot be reached.
        """
        return await self.refresh(registry)

    async def refresh(self, registry: ToolRegistry) -> list[str]:
        """List the server's tools again and register those not registered yet (the
        names registered now). A name another tool has taken is left out (logged); a tool
        the server no longer lists stays registered, and its calls fail with the server's
        error (:class:`McpToolError`)."""
        listed = await self.list_tools()
        added = []
        for tool in listed:
            if tool.name in registry:
                if tool.name in self.tools:
                    self.tools[tool.name] = tool  # its schema as listed now
                else:
                    log.warning(
                        "MCP tool %r of %s left out: %s is taken", tool.remote, self.url, tool.name
                    )
                continue
            registry.add(
                tool.name,
                self._runner(tool.remote),
                description=tool.description,
                idempotent=tool.remote in self.idempotent,
                find=self.find.get(tool.remote),
            )
            self.tools[tool.name] = tool
            added.append(tool.name)
        log.info("MCP server %s: %d tool(s), %d registered now", self.url, len(listed), len(added))
        return added

    async def list_tools(self) -> list[McpTool]:
        """The server's tools now (every page), named as the gateway names them; a name
        that cannot be made a tool name (too long) is left out, logged.

        Raises:
            ConfigError: no credential for the listing, the server refused it, or it
                cannot be reached.
        """
        credential = self.credentials.get(self.list_credential)
        if credential is None:
            raise ConfigError(
                f"no credential {self.list_credential!r} to list the tools of {self.url}"
            )
        found: list[McpTool] = []
        try:
            async with self._session(credential) as session:
                cursor: str | None = None
                while True:
                    page = await session.list_tools(cursor=cursor)
                    found.extend(self._named(tool) for tool in page.tools if self._wanted(tool))
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except ToolRefused as exc:
            raise ConfigError(f"listing the tools of {self.url}: {exc.detail}") from None
        except Exception as exc:
            detail = _hidden(f"{type(exc).__name__}: {exc}", credential)
            raise ConfigError(f"listing the tools of {self.url}: {detail}") from None
        names = [tool.name for tool in found]
        if len(set(names)) != len(names):
            raise ConfigError(f"MCP tools of {self.url} share a name once made tool names: {names}")
        return [tool for tool in found if TOKEN_RE.match(tool.name) or _too_long(tool, self.url)]

    def _wanted(self, tool: Any) -> bool:
        return self.only is None or tool.name in self.only

    def _named(self, tool: Any) -> McpTool:
        return McpTool(
            name=self.prefix + _UNSAFE.sub("_", tool.name),
            remote=tool.name,
            description=(tool.description or "").strip().split("\n")[0][:200],
            input_schema=dict(tool.input_schema),
        )

    def _runner(self, remote: str) -> ToolFn:
        async def run(call: ToolCall) -> Any:
            return await self.call(remote, call)

        return run

    async def call(self, remote: str, call: ToolCall) -> Any:
        """Call MCP tool ``remote`` with ``call``'s arguments and credential: its structured
        content, or its text (the text parts joined), or its content blocks as JSON.

        Raises:
            McpUnauthorized: the server refused the credential (401, 403).
            McpToolError: the tool's result is an error, or the server's answer is.
        """
        credential = call.credential
        if credential is None:
            raise McpUnauthorized(call.tool, f"no credential for {call.tool}")
        async with self._session(credential, tool=call.tool) as session:
            result = await session.call_tool(remote, call.args)
        if result.is_error:
            raise McpToolError(
                call.tool,
                _hidden(f"{remote} on {self.url} answered an error: {_text(result)}", credential),
            )
        if result.structured_content is not None:
            return result.structured_content
        texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
        if texts:
            return "\n".join(texts)
        return [block.model_dump(mode="json", by_alias=True) for block in result.content]

    @asynccontextmanager
    async def _session(self, credential: Credential, *, tool: str = "") -> AsyncIterator[Any]:
        """A client session to the server with ``credential`` as the bearer token, open
        for one use: the server's refusal of the credential raises
        :class:`McpUnauthorized`, its protocol errors :class:`McpToolError`."""
        streamable, httpx2 = _sdk()
        from mcp.client import Client
        from mcp.shared.exceptions import MCPError

        refused: list[int] = []
        http = httpx2.AsyncClient(
            auth=_bearer(httpx2, credential, refused), timeout=httpx2.Timeout(self.timeout_s)
        )
        transport = streamable.streamable_http_client(self.url, http_client=http)
        name = tool or self.list_credential
        try:
            async with Client(transport, read_timeout_seconds=self.timeout_s, cache=None) as client:
                yield client
        except Exception as raised:
            exc = _leaf(raised)
            if refused:
                raise McpUnauthorized(
                    name,
                    f"{self.url} refused the credential {credential.fingerprint} "
                    f"(HTTP {refused[-1]})",
                ) from None
            if isinstance(exc, MCPError):
                message = f"{self.url}: error {exc.code}: {exc.error.message}"
                raise McpToolError(name, _hidden(message, credential)) from None
            if exc is not raised:
                raise exc from None
            raise
        finally:
            await http.aclose()


def _bearer(httpx2: ModuleType, credential: Credential, refused: list[int]) -> Any:
    """An ``httpx2.Auth`` that sends the credential as a bearer token and notes a 401 or
    403 answer in ``refused`` (the transport reports those as an internal error only)."""

    class Bearer(httpx2.Auth):  # type: ignore[misc,name-defined]
        def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            request.headers["Authorization"] = f"Bearer {credential.reveal()}"
            response = yield request
            if response.status_code in (401, 403):
                refused.append(response.status_code)

    return Bearer()


def _leaf(exc: Exception) -> Exception:
    """The first error of an exception group (the client's task groups wrap them)."""
    while isinstance(exc, ExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _text(result: Any) -> str:
    texts = [getattr(block, "text", "") for block in result.content]
    return " ".join(t for t in texts if t)[:512] or "(no text)"


def _hidden(text: str, credential: Credential) -> str:
    """``text`` with the credential's value, should it be there, as its fingerprint."""
    return text.replace(credential.reveal(), credential.fingerprint)


def _too_long(tool: McpTool, url: str) -> bool:
    log.warning("MCP tool %r of %s left out: %r is not a tool name", tool.remote, url, tool.name)
    return False
