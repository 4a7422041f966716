"""The tools a gateway can run: a name, an async function, whether it needs a credential,
and what the gateway may do when a run of it was left in doubt.

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

The gateway runs a tool at most once per request step by its own ledger (see
:mod:`jetmesh.toolgate.gateway`). A run that a dying gateway left unrecorded is in doubt; the
registration says how to settle it:

- ``find``: an async function of the same :class:`ToolCall` that asks the target whether
  the call happened under ``call.key``, and returns what the tool would have returned, or
  None if it did not happen (then the tool runs, with the same key);
- ``idempotent=True``: the target does a call once per ``call.key``, so the gateway may
  run the tool again with the same key;
- neither: the gateway does not run it again; the request is refused as in doubt
  (:class:`~jetmesh.ToolInDoubt`) for a person to decide.

::

    @tools.tool("refund", find=find_refund)           # asks the payment system by key
    @tools.tool("send", idempotent=True)               # the target de-duplicates by key
    @tools.tool("search", needs_credential=False, idempotent=True)   # reads only
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigError
from ..addresses import check_token
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
FindFn = Callable[[ToolCall], Awaitable[Any | None]]
"""Asks a tool's target whether the call under ``call.key`` happened: what the tool would
have returned, or None if it did not happen."""


@dataclass(frozen=True)
class Tool:
    name: str
    fn: ToolFn
    needs_credential: bool = True
    description: str = ""
    idempotent: bool = False
    """The target does a call once per idempotency key: after a run in doubt, the gateway
    may run it again with the same key."""
    find: FindFn | None = None
    """Settles a run in doubt by asking the target (see :data:`FindFn`)."""

    @property
    def settles_doubt(self) -> bool:
        """Whether the gateway may go on after a run of this tool was left in doubt."""
        return self.idempotent or self.find is not None


class ToolRegistry:
    """Tools by name."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(
        self,
        name: str,
        fn: ToolFn,
        *,
        needs_credential: bool = True,
        description: str = "",
        idempotent: bool = False,
        find: FindFn | None = None,
    ) -> None:
        """Register ``fn`` as tool ``name``.

        Args:
            name: the tool's name (a subject token).
            fn: runs the tool for one :class:`ToolCall`.
            needs_credential: the gateway injects the tool's credential.
            description: one line for people.
            idempotent: the target does a call once per ``call.key``: a run left in doubt
                may be run again with the same key.
            find: asks the target whether a run left in doubt happened (see
                :data:`FindFn`); tried before running the tool again.

        Raises:
            ConfigError: ``name`` is not a name (subject token) or is taken.
        """
        check_token(name, "tool name")
        if name in self._tools:
            raise ConfigError(f"tool {name!r} is registered already")
        self._tools[name] = Tool(name, fn, needs_credential, description, idempotent, find)

    def tool(
        self,
        name: str,
        *,
        needs_credential: bool = True,
        description: str = "",
        idempotent: bool = False,
        find: FindFn | None = None,
    ) -> Callable[[ToolFn], ToolFn]:
        """Decorator form of :meth:`add`."""

        def register(fn: ToolFn) -> ToolFn:
            self.add(
                name,
                fn,
                needs_credential=needs_credential,
                description=description,
                idempotent=idempotent,
                find=find,
            )
            return fn

        return register

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tools))
