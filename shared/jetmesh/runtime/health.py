"""HTTP health endpoints of an agent process, for probes (Kubernetes, a load balancer).

``GET /healthz`` answers 200 ``{"status": "alive"}`` while the process's event loop runs.
``GET /readyz`` answers 200 when every replica of the process is ready for work, else 503;
both bodies name each replica's state (``{"status": "not ready", "replicas": {"billing":
"reconnecting"}}``). ``GET /metrics``, when the server is given a ``metrics`` source (as
:func:`jetmesh.serve` does), answers 200 with the process's metrics in Prometheus's text
format (:mod:`jetmesh.telemetry.metrics`). Anything else is 404 (405 for a method other
than GET or HEAD).

The server runs on the process's event loop (``asyncio.start_server``) and speaks just
enough HTTP/1.1 for a probe: one request per connection, read with bounded lines, a bounded
header block and a deadline, at most :data:`MAX_CONNECTIONS` at once; a malformed or
oversized request gets a 400 or 431 and the connection is closed. Nothing a client sends
can stop the process.

:func:`jetmesh.serve` starts one when ``health_port`` is set (``jetmesh run --health-port``),
before its replicas start, and closes it after they drained.

Example:
    >>> states = lambda: {"billing": "running"}                             # doctest: +SKIP
    >>> async with HealthServer(states, host="127.0.0.1", port=0) as health:  # doctest: +SKIP
    ...     print(health.port)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Self

from .._exceptions import ConfigError

__all__ = ["READY", "Exposition", "HealthServer", "Readiness"]

log = logging.getLogger("jetmesh.health")

READY = "running"
"""The state of a replica that is ready for work; any other state makes ``/readyz`` 503."""

Readiness = Callable[[], Mapping[str, str]]
"""Returns each replica's state (its role's name -> a state such as ``"running"``,
``"starting"``, ``"reconnecting"``, ``"draining"``); asked on every ``/readyz``."""

Exposition = Callable[[], tuple[bytes, str]]
"""Returns the body of ``/metrics`` and its content type; asked on every ``/metrics``."""

JSON = "application/json"

MAX_LINE_BYTES = 8 * 1024
"""Longest request line or header line read."""

MAX_HEADER_BYTES = 32 * 1024
"""Most bytes of header lines read for one request."""

READ_TIMEOUT_S = 5.0
"""How long a client has to send its request line and headers."""

WRITE_TIMEOUT_S = 5.0
"""How long a client has to take the answer."""

MAX_CONNECTIONS = 64
"""Connections served at once; one more is closed unanswered (probes come one at a time)."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _BadRequest(Exception):
    """A request that is answered with ``status`` and closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HealthServer:
    """``/healthz``, ``/readyz`` (and ``/metrics``) on ``host:port``, answering from
    ``readiness`` (and ``metrics``)."""

    def __init__(
        self,
        readiness: Readiness,
        *,
        host: str,
        port: int,
        metrics: Exposition | None = None,
    ) -> None:
        """
        Args:
            readiness: each replica's state, asked on every ``/readyz``.
            host: the address to listen on (``0.0.0.0`` in a container).
            port: the port to listen on; 0 picks a free one (see :attr:`port`).
            metrics: the body and content type of ``/metrics``; None: no ``/metrics``.
        """
        self.readiness = readiness
        self.metrics = metrics
        self.host = host
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when asked for 0).

        Raises:
            ConfigError: the server is not started.
        """
        if self._server is None or not self._server.sockets:
            raise ConfigError("the health server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://host:port``, as a probe would reach it."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        """Listen; returns self. Idempotent.

        Raises:
            ConfigError: the address cannot be listened on (the port is taken, say).
        """
        if self._server is not None:
            return self
        try:
            self._server = await asyncio.start_server(
                self._accept, self.host, self._requested_port, limit=MAX_LINE_BYTES
            )
        except OSError as exc:
            raise ConfigError(
                f"health endpoints cannot listen on {self.host}:{self._requested_port}: {exc}"
            ) from None
        return self

    async def close(self) -> None:
        """Stop listening and close open connections. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections))
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- one connection --------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= MAX_CONNECTIONS or task is None:
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._answer(reader, writer)
        except Exception as exc:  # a client that went away, or worse: never the process
            log.debug("health connection: %s", exc)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                method, path = await _read_request(reader)
            head_only = method == "HEAD"
            status, payload, content_type = self.respond(method, path)
        except TimeoutError:
            status, payload, content_type = _json(408, {"error": "request not received in time"})
        except _BadRequest as bad:
            status, payload, content_type = _json(bad.status, {"error": bad.reason})
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        writer.write(head if head_only else head + payload)
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()

    def respond(self, method: str, path: str) -> tuple[int, bytes, str]:
        """The status, body and content type for ``method path``: ``/metrics`` from
        :attr:`metrics`, the rest in JSON (:meth:`route`)."""
        if self.metrics is None or path.split("?", 1)[0] != "/metrics":
            return _json(*self.route(method, path))
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"{method[:20]} is not allowed: GET /metrics"})
        try:
            body, content_type = self.metrics()
        except Exception as exc:  # a failing collector is an error answer, not a dropped scrape
            log.warning("metrics exposition failed: %s: %s", type(exc).__name__, exc)
            return _json(500, {"error": f"metrics exposition failed: {exc}"})
        return 200, body, content_type

    def route(self, method: str, path: str) -> tuple[int, dict[str, object]]:
        """The status and JSON body for ``method path``."""
        path = path.split("?", 1)[0]
        if path not in ("/healthz", "/readyz"):
            return 404, {"error": f"no such path: {path[:100]}"}
        if method not in ("GET", "HEAD"):
            return 405, {"error": f"{method[:20]} is not allowed: GET {path}"}
        if path == "/healthz":
            return 200, {"status": "alive"}
        try:
            states = dict(self.readiness())
        except Exception as exc:  # a failing check is a "not ready", never a dropped probe
            log.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
            return 503, {"status": "not ready", "error": f"readiness check failed: {exc}"}
        ready = bool(states) and all(state == READY for state in states.values())
        return (200 if ready else 503), {
            "status": "ready" if ready else "not ready",
            "replicas": states,
        }


def _json(status: int, body: dict[str, object]) -> tuple[int, bytes, str]:
    return status, json.dumps(body, sort_keys=True).encode() + b"\n", JSON


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of a request, its headers read (bounded) and dropped.

    Raises:
        _BadRequest: a malformed request line, or lines or headers past the limits.
    """
    line = await _read_line(reader)
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/") or not parts[1].startswith("/"):
        raise _BadRequest(400, "malformed request line")
    method, path, _ = parts
    if not method.isalpha() or not method.isupper():
        raise _BadRequest(400, "malformed request line")
    total = 0
    while True:
        header = await _read_line(reader)
        if not header:
            return method, path
        total += len(header)
        if total > MAX_HEADER_BYTES:
            raise _BadRequest(431, "headers too large")


async def _read_line(reader: asyncio.StreamReader) -> str:
    """One line, without its end; "" for the empty line that ends the headers.

    Raises:
        _BadRequest: the line is longer than :data:`MAX_LINE_BYTES`, the client closed the
            connection before its end, or it is not ASCII.
    """
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "line too long") from None
    except asyncio.IncompleteReadError:
        raise _BadRequest(400, "request ended early") from None
    try:
        return raw.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise _BadRequest(400, "request is not ASCII") from None
