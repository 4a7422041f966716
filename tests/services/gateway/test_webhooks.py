"""Signed webhooks on completion, with retries, to a loopback receiver of the test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.gateway import GatewaySettings, Webhook
from services.gateway.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, signature
from tests.harness.secured import SecuredMesh
from tests.services.gateway.conftest import API_KEYS, BOB_KEY, Served, serve

pytestmark = pytest.mark.integration

SECRET = "whsec_0123456789abcdef"


class Receiver:
    """A loopback HTTP server that answers 500 to the first ``fail`` posts, then 204."""

    def __init__(self, fail: int) -> None:
        self.posts: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.posts) < fail else 204
                receiver.posts.append((dict(self.headers), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
        r.thread.join()


@pytest.fixture
async def hooked(enforced: SecuredMesh, receiver: Receiver) -> AsyncIterator[Served]:
    settings = GatewaySettings(
        api_keys=API_KEYS,
        webhooks=(Webhook(caller="acme/alice", url=receiver.url, secret=SECRET),),
        webhook_backoff_s=0.01,
    )
    s = await serve(enforced, settings)
    try:
        yield s
    finally:
        await s.http.aclose()
        await s.gateway.close()


async def delivered(receiver: Receiver, count: int) -> None:
    for _ in range(500):
        if len(receiver.posts) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(receiver.posts)} posts, expected {count}")


async def test_an_outcome_is_posted_signed_and_retried_until_accepted(
    hooked: Served, receiver: Receiver
) -> None:
    r = await hooked.post("echo", {"text": "hook", "pause_s": 0.2})
    assert r.status_code == 202
    await delivered(receiver, 3)
    assert [status for _, _, status in receiver.posts] == [500, 500, 204]
    bodies = {body for _, body, _ in receiver.posts}
    assert len(bodies) == 1
    headers, body, _ = receiver.posts[-1]
    sent = json.loads(body)
    assert (sent["workflow"], sent["task"], sent["agent"]) == (
        r.json()["workflow"],
        r.json()["task"],
        "echo",
    )
    assert sent["status"] == "completed"
    assert sent["result"]["text"] == "HOOK"
    assert headers[DELIVERY_HEADER] == r.json()["task"]
    t, v1 = (part.split("=", 1)[1] for part in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)
    assert headers[SIGNATURE_HEADER] == signature(SECRET, int(t), body)
    assert signature("another-secret-000", int(t), body) != headers[SIGNATURE_HEADER]


async def test_a_caller_without_a_webhook_gets_none(hooked: Served, receiver: Receiver) -> None:
    r = await hooked.post("echo", {"text": "quiet"}, key=BOB_KEY, headers={"Prefer": "wait=10"})
    assert r.status_code == 200
    r = await hooked.post("echo", {"text": "loud"}, headers={"Prefer": "wait=10"})
    assert r.status_code == 200
    await delivered(receiver, 3)
    assert all(json.loads(body)["result"]["text"] == "LOUD" for _, body, _ in receiver.posts)
