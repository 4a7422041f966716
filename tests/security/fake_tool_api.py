"""A stand-in for a remote tool API on loopback: it serves JSON over HTTP/1.1 and answers
only requests that carry ``Authorization: Bearer <the credential it holds now>``, so a test
can tell that the gateway injected the credential, and which one.

Example:
    >>> api = await FakeToolApi(credential="v1").start()                # doctest: +SKIP
    >>> api.rotate("v2")                       # the remote side's rotation  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any


class FakeToolApi:
    """``POST /<tool>`` with a JSON body; answers ``{"tool", "args", "doc"}``."""

    def __init__(self, credential: str, doc: str = "") -> None:
        self.credential = credential
        self.doc = doc
        """What ``/lookup`` answers with (a test may plant an injected instruction)."""
        self.calls: Counter[str] = Counter()
        """Authorised calls by path."""
        self.refused: list[str] = []
        """Bearer values refused."""
        self.bearers: list[str] = []
        """Bearer values accepted, in order."""
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> FakeToolApi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def rotate(self, credential: str) -> None:
        """The remote side now accepts only ``credential``."""
        self.credential = credential

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await reader.readline()).decode()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = request.split()[1]
            bearer = headers.get("authorization", "").removeprefix("Bearer ")
            if bearer != self.credential:
                self.refused.append(bearer)
                status, answer = "401 Unauthorized", {"error": "bad credential"}
            else:
                self.bearers.append(bearer)
                self.calls[path] += 1
                args: Any = json.loads(body or b"{}")
                status, answer = "200 OK", {"tool": path.strip("/"), "args": args, "doc": self.doc}
            data = json.dumps(answer).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        finally:
            writer.close()
