"""A stand-in for a remote tool API on loopback that counts its own invocations and keeps
what each call did under its idempotency key, so a test can tell how often a gateway
really called the tool, and a gateway's ``find`` can ask it whether a call happened.

- ``POST /<tool>`` with ``Idempotency-Key``: one invocation (counted). The first call under
  a key does the effect (counted apart) and keeps its answer; a later call under the same
  key gets that answer (the target's own de-duplication, the second line). With
  :meth:`hold`, the answer is not sent until :meth:`release`: the effect has happened, and
  the gateway waits mid-call, for a test to kill it there.
- ``GET /<tool>`` with ``Idempotency-Key``: the kept answer (200), or 404 if no call under
  that key happened. Counted as a find, not an invocation.

Example:
    >>> api = await KeyedToolApi().start()                               # doctest: +SKIP
    >>> api.hold("pay")  # the next POST /pay does its effect, then waits  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

URL_ENV = "KEYED_TOOL_API_URL"
"""Where a gateway process of the tests finds the API (set by the test before it starts
the process)."""


class KeyedToolApi:
    """The API's counters are per tool (``invocations``, ``effects``, ``finds``) and per
    key (``keys``)."""

    def __init__(self) -> None:
        self.invocations: Counter[str] = Counter()
        """``POST`` calls by tool: how often the gateway ran the tool."""
        self.effects: Counter[str] = Counter()
        """Effects done by tool (first calls under a key)."""
        self.finds: Counter[str] = Counter()
        """``GET`` calls by tool: how often a gateway asked whether a call happened."""
        self.keys: list[str] = []
        """The idempotency key of every invocation, in order."""
        self.done: dict[str, Any] = {}
        """The answer kept under each key."""
        self._held: set[str] = set()
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> KeyedToolApi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def hold(self, tool: str) -> None:
        """Calls of ``tool`` do their effect and then wait for :meth:`release`."""
        self._held.add(tool)

    def release(self) -> None:
        self._held.clear()
        self._release.set()

    async def aclose(self) -> None:
        self.release()
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
            method, path = request.split()[:2]
            tool, key = path.strip("/"), headers.get("idempotency-key", "")
            if method == "GET":
                self.finds[tool] += 1
                found = self.done.get(f"{tool} {key}")
                status, answer = ("200 OK", found) if found else ("404 Not Found", {})
            else:
                self.invocations[tool] += 1
                self.keys.append(key)
                if f"{tool} {key}" not in self.done:
                    self.effects[tool] += 1
                    self.done[f"{tool} {key}"] = {
                        "tool": tool,
                        "key": key,
                        "args": json.loads(body or b"{}"),
                        "n": self.effects[tool],
                    }
                status, answer = "200 OK", self.done[f"{tool} {key}"]
                if tool in self._held:
                    await self._release.wait()
            data = json.dumps(answer).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway died mid-call
        finally:
            writer.close()
