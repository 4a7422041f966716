"""The tools a gateway can run: a name, an async function, whether it needs a credential.

A tool's function gets one :class:`ToolCall` (its arguments, the credential for this
call only, and an idempotency key) and returns a JSON-encodable result::

    tools = ToolRegistry()

    @tools.tool("refund")
    async def refund(call: ToolCall) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            r = await http.post(URL, json=call.args, headers={
                "Authorization": f"Bearer {call.credential.reveal()}",
                "Idempotency-Key": call.key})
        return r.json()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigError
from ..subjects import check_token
from .credentials import Credential


@dataclass(frozen=True)
class ToolCall:
    """What a tool's function gets for one call."""

    tool: str
    args: dict[str, Any]
    credential: Credential | None
    """The tool's credential for this call (None for a tool that needs none)."""
    key: str
    """An idempotency key: ``<workflow>/<step>`` of the request, the same on every retry
    of it, for the remote system to do the call once."""
    caller: str
    """On whose behalf (the caller's subject)."""
    tenant: str
    sender: str
    """The role that asked."""
    approved_by: str = ""
    """The person who approved it (irreversible tools)."""


ToolFn = Callable[[ToolCall], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    name: str
    fn: ToolFn
    needs_credential: bool = True
    description: str = ""


class ToolRegistry:
    """Tools by name."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(
        self, name: str, fn: ToolFn, *, needs_credential: bool = True, description: str = ""
    ) -> None:
        """Register ``fn`` as tool ``name``.

        Raises:
            ConfigError: ``name`` is not a name (subject token) or is taken.
        """
        check_token(name, "tool name")
        if name in self._tools:
            raise ConfigError(f"tool {name!r} is registered already")
        self._tools[name] = Tool(name, fn, needs_credential, description)

    def tool(
        self, name: str, *, needs_credential: bool = True, description: str = ""
    ) -> Callable[[ToolFn], ToolFn]:
        """Decorator form of :meth:`add`."""

        def register(fn: ToolFn) -> ToolFn:
            self.add(name, fn, needs_credential=needs_credential, description=description)
            return fn

        return register

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tools))
