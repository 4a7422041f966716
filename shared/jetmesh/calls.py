"""Calls awaiting their replies, keyed by the id of the task that was sent."""

from __future__ import annotations

import asyncio

from .envelope import Envelope


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
