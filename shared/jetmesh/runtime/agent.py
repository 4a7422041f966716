"""Agents and their typed handlers.

Example:
    >>> agent = Agent("echo")
    >>> @agent.handler
    ... async def echo(msg: Echo, ctx: Context) -> Echo:
    ...     return Echo(text=msg.text.upper())

Run it with ``jetmesh run my_module:agent``; start the same command again for a replica.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints

from .._exceptions import ConfigError, SchemaViolation
from ..addresses import check_token
from ..envelope import type_name
from .context_base import ContextBase

HandlerFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Handler:
    """One registered handler: its function and the types it takes and returns."""

    fn: HandlerFn
    input_type: type[Any]
    output_type: Any
    wants_context: bool

    @property
    def input_name(self) -> str:
        return type_name(self.input_type)

    async def __call__(self, body: Any, ctx: ContextBase) -> Any:
        if self.wants_context:
            return await self.fn(body, ctx)
        return await self.fn(body)


class Agent:
    """An agent role: a name, what it may do, and its handlers by input type."""

    def __init__(
        self,
        name: str,
        *,
        scopes: Sequence[str] = (),
        concurrency: int | None = None,
        description: str = "",
    ) -> None:
        self.name = check_token(name, "agent name")
        self.scopes = tuple(scopes)
        self.concurrency = concurrency
        self.description = description
        self.handlers: dict[str, Handler] = {}

    def handler(self, fn: HandlerFn) -> HandlerFn:
        """Register ``fn(body: In, ctx: Context) -> Out`` for tasks whose type is ``In``.

        Raises:
            ConfigError: ``fn`` is not async, lacks type hints, or ``In`` is taken.
        """
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(f"handler {fn.__name__} must be `async def`")
        hints = get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        if not params or params[0] not in hints:
            raise ConfigError(f"handler {fn.__name__}: annotate its first parameter's type")
        handler = Handler(
            fn=fn,
            input_type=hints[params[0]],
            output_type=hints.get("return", Any),
            wants_context=len(params) > 1,
        )
        if handler.input_name in self.handlers:
            raise ConfigError(f"{self.name} already handles {handler.input_name}")
        self.handlers[handler.input_name] = handler
        return fn

    def handler_for(self, type_: str) -> Handler:
        """The handler for a task of payload type ``type_``.

        An empty type (a publisher that does not name it) goes to the only handler, if
        there is exactly one.

        Raises:
            SchemaViolation: no handler takes ``type_``.
        """
        handler = self.handlers.get(type_)
        if handler is None and not type_ and len(self.handlers) == 1:
            handler = next(iter(self.handlers.values()))
        if handler is None:
            raise SchemaViolation(
                f"{self.name} has no handler for type {type_!r} "
                f"(handles: {', '.join(sorted(self.handlers)) or 'nothing'})"
            )
        return handler
