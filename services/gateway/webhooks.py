"""Signed webhooks: when a workflow a caller started ends, its outcome is POSTed to the
caller's configured URL, signed with the caller's webhook secret, with retries.

The body is the JSON a waiting request gets (``workflow``, ``task``, ``agent``,
``status``, ``result`` or ``error``). ``Jetmesh-Signature: t=<unix time>,v1=<hex>``, where
``v1`` is HMAC-SHA256 under the secret of ``<t>.<body>``: a receiver recomputes it and
refuses an old ``t`` (a replay). ``Jetmesh-Delivery`` is the root task's id, the same on
every retry (a receiver de-duplicates by it). A delivery is retried with a doubling pause
(``webhook_backoff_s``) until a 2xx or ``webhook_attempts`` tries.

The watch for the outcome lives in the gateway's process: a gateway stopped before the
workflow ends sends nothing for it (docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time

import httpx

from .auth import HttpCaller
from .door import Door, Started, ends, logged_outcome
from .settings import GatewaySettings, Webhook

log = logging.getLogger("services.gateway.webhooks")

SIGNATURE_HEADER = "Jetmesh-Signature"
DELIVERY_HEADER = "Jetmesh-Delivery"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Jetmesh-Signature`` of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class Webhooks:
    """The webhook deliveries of one gateway replica."""

    def __init__(
        self, door: Door, settings: GatewaySettings, http: httpx.AsyncClient | None = None
    ) -> None:
        self._door = door
        self._settings = settings
        self._targets: dict[str, Webhook] = {w.caller: w for w in settings.webhooks}
        self._http = http or httpx.AsyncClient(timeout=10.0)
        self._running: set[asyncio.Task[None]] = set()

    def started(self, caller: HttpCaller, started: Started) -> None:
        """Watch the workflow ``started`` for ``caller``, if the caller has a webhook (not
        for a repeated idempotent request: the first one watches)."""
        target = self._targets.get(caller.key)
        if target is None or started.again:
            return
        task = asyncio.create_task(self._deliver(target, started))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _deliver(self, target: Webhook, started: Started) -> None:
        try:
            outcome = started.outcome or await self._outcome(started)
            body = json.dumps(
                {"workflow": started.workflow, "task": started.task, "agent": started.agent}
                | outcome
            ).encode()
            await self._post(target, started.task, body)
        except Exception as exc:  # a background delivery: say so, never crash the app
            log.warning("webhook for %s not delivered: %s", started.workflow, exc)

    async def _outcome(self, started: Started) -> dict[str, object]:
        """The root task's outcome, read from the log as it grows."""
        after, pause = 0, 0.05
        while True:
            async for stored, logged in self._door.events(started.workflow, after):
                after = stored.seq
                if ends(logged, started.task, started.agent):
                    return logged_outcome(logged)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._settings.poll_max_s)

    async def _post(self, target: Webhook, delivery: str, body: bytes) -> None:
        s = self._settings
        for attempt in range(s.webhook_attempts):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(
                    target.secret.get_secret_value(), int(time.time()), body
                ),
                DELIVERY_HEADER: delivery,
            }
            try:
                r = await self._http.post(target.url, content=body, headers=headers)
                if r.is_success:
                    return
                said = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                said = str(exc) or type(exc).__name__
            log.info("webhook %s attempt %d: %s", delivery, attempt + 1, said)
            if attempt + 1 < s.webhook_attempts:
                await asyncio.sleep(s.webhook_backoff_s * 2**attempt)
        log.warning("webhook %s to %s: gave up after %d tries", delivery, target.url, attempt + 1)

    async def close(self) -> None:
        """Stop watching and delivering (safe to call twice)."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self._http.aclose()
