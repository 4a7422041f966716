"""Connecting to NATS with the reconnect behaviour every jetmesh process shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.aio.client import Client as NATS

from .._exceptions import ConfigError
from .nats_client import MeshNatsClient

log = logging.getLogger("jetmesh.bus")

RECONNECT_WAIT_S = 0.5
REFUSED_RECONNECTS = 3
"""Reconnects the server refuses for the credentials, in a row, before the client gives
up and closes: the role was shut out (``jetmesh keys revoke``), and retrying would only
be refused again (and hold a socket each time)."""
PING_INTERVAL_S = 10
RECONNECT_BUFFER_BYTES = 8 * 1024 * 1024
AUTH_REFUSED = "authorization violation"
AUTH_HINT = (
    "on servers that enforce a policy a process connects as its role, with the seed "
    "`jetmesh up` writes to <keys dir>/nats/<role>.nk for every role of that policy "
    "(JETMESH_POLICY_FILE, else the library's own roles)"
)


async def connect(
    url: str,
    name: str,
    *,
    on_reconnect: Sequence[Callable[[], Awaitable[None]]] = (),
    on_refused: Callable[[], None] | None = None,
    error_listeners: Sequence[Callable[[Exception], None]] = (),
    **options: Any,
) -> NATS:
    """Connect with unlimited reconnects, a reconnect buffer, and logged state changes.
    A first connection the server refuses for its credentials fails at once; once
    connected, :data:`REFUSED_RECONNECTS` reconnects in a row refused for the credentials
    close the client and call ``on_refused`` (the role was shut out).

    Args:
        url: one URL or several, comma separated.
        name: the client name shown by the server (agent and instance).
        on_reconnect: coroutines to run after each reconnect (the list is read at that
            time, so listeners may be added later).
        on_refused: called once the client gave up on credentials the server refuses.
        error_listeners: called with each other error the server reports (a permissions
            violation of a publish or a subscription, say); the list is read at that time.
        **options: passed through to ``nats.connect``.

    Raises:
        ConfigError: nats-server refused the credentials (or their absence).
    """

    connecting = True
    refused = 0

    async def on_error(exc: Exception) -> None:
        nonlocal refused
        if AUTH_REFUSED in str(exc).lower():
            if connecting:  # raised out of nats-py's first connect, not retried forever
                raise ConfigError(f"nats-server refused {name}: {exc}; {AUTH_HINT}") from exc
            refused += 1
            if refused == REFUSED_RECONNECTS:
                log.error(
                    "nats-server refused %s's credentials %d times in a row (shut out by "
                    "`jetmesh keys revoke`?): closing the connection",
                    name,
                    refused,
                )
                asyncio.get_running_loop().create_task(_give_up(client, on_refused))
            return
        log.warning("nats error (%s): %s", name, exc)
        for listener in list(error_listeners):
            try:
                listener(exc)
            except Exception as failed:
                log.warning("error listener failed (%s): %s", name, failed)

    async def on_disconnect() -> None:
        if not (client.is_closed or client.is_draining):
            log.warning("nats disconnected (%s)", name)

    async def reconnected() -> None:
        nonlocal refused
        refused = 0
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
    try:
        await client.connect(**settings)
    except ConfigError:
        await client.close()
        raise
    connecting = False
    return client


async def _give_up(client: NATS, on_refused: Callable[[], None] | None) -> None:
    try:
        await client.close()
    finally:
        if on_refused is not None:
            on_refused()
