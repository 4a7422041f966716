"""Connecting to NATS with the reconnect behaviour every jetmesh process shares."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.aio.client import Client as NATS

from .nats_client import MeshNatsClient

log = logging.getLogger("jetmesh.bus")

RECONNECT_WAIT_S = 0.5
PING_INTERVAL_S = 10
RECONNECT_BUFFER_BYTES = 8 * 1024 * 1024


async def connect(
    url: str,
    name: str,
    *,
    on_reconnect: Sequence[Callable[[], Awaitable[None]]] = (),
    **options: Any,
) -> NATS:
    """Connect with unlimited reconnects, a reconnect buffer, and logged state changes.

    Args:
        url: one URL or several, comma separated.
        name: the client name shown by the server (agent and instance).
        on_reconnect: coroutines to run after each reconnect (the list is read at that
            time, so listeners may be added later).
        **options: passed through to ``nats.connect``.
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats error (%s): %s", name, exc)

    async def on_disconnect() -> None:
        if not (client.is_closed or client.is_draining):
            log.warning("nats disconnected (%s)", name)

    async def reconnected() -> None:
        log.info("nats reconnected (%s)", name)
        for listener in list(on_reconnect):
            try:
                await listener()
            except Exception as exc:
                log.warning("reconnect listener failed (%s): %s", name, exc)

    client = MeshNatsClient()
    settings: dict[str, Any] = {
        "servers": [u.strip() for u in url.split(",") if u.strip()],
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": RECONNECT_WAIT_S,
        "ping_interval": PING_INTERVAL_S,
        "pending_size": RECONNECT_BUFFER_BYTES,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": reconnected,
    }
    settings.update(options)
    await client.connect(**settings)
    return client
