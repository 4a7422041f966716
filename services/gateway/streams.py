"""A workflow's events as Server-Sent Events: read from the log by direct get (the
gateway's role may not create consumers), polled with a backoff while nothing new is
stored, until the root task's agent logs its end.

Each SSE event: ``id`` the event's stream sequence (``Last-Event-ID`` resumes after it),
``event`` its kind, ``data`` the event as ``GET /v1/workflows/{id}`` shows it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from .door import Door, ends, event_json

FIRST_PAUSE_S = 0.05


async def event_stream(
    door: Door, workflow: str, task: str, agent: str, after: int, *, poll_max_s: float
) -> AsyncIterator[dict[str, str]]:
    """The SSE events of ``workflow`` after sequence ``after``, until its root ``task``
    (sent to ``agent``) completes, fails or is refused; an end logged before ``after``
    ends the stream at once."""
    seen = 0
    pause = FIRST_PAUSE_S
    while True:
        new = False
        async for stored, logged in door.events(workflow, seen):
            seen = stored.seq
            if stored.seq > after:
                new = True
                yield {
                    "id": str(stored.seq),
                    "event": logged.event.kind,
                    "data": json.dumps(event_json(stored.seq, logged)),
                }
            if ends(logged, task, agent):
                return
        pause = FIRST_PAUSE_S if new else min(pause * 2, poll_max_s)
        await asyncio.sleep(pause)
