"""Calls awaiting their replies, keyed by the id of the task that was sent, and what a
reply decodes to."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from ._exceptions import CallFailed
from .envelope import Envelope, ErrorBody, decode_body

T = TypeVar("T")


def decode_reply(agent: str, reply: Envelope, returns: type[T]) -> T:
    """The body of a reply as ``returns``, or the error it carries.

    Raises:
        CallFailed: the reply is an error.
        SchemaViolation: the body is not a ``returns``.
    """
    if reply.kind == "error":
        err = decode_body(reply, ErrorBody)
        raise CallFailed(agent, err.error_type, err.message, err.reason)
    return decode_body(reply, returns)


class PendingCalls:
    """Futures of calls in flight in one process; a reply resolves the one it answers."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Envelope]] = {}

    def expect(self, task_id: str) -> asyncio.Future[Envelope]:
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = future
        return future

    def forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)

    def resolve(self, reply: Envelope) -> bool:
        """Hand ``reply`` to the call it answers; False if nobody waits for it (late reply)."""
        future = self._waiting.pop(reply.parent or "", None)
        if future is None or future.done():
            return False
        future.set_result(reply)
        return True

    def __len__(self) -> int:
        return len(self._waiting)

    def cancel_all(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        self._waiting.clear()
