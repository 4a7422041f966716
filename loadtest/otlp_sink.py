"""OTLP/HTTP receivers on a free loopback port: :class:`OtlpHttpServer`, the HTTP part any
receiver shares (one ``POST`` an export, gzip or not, answered in a thread), and
:class:`SpanSink`, the benchmark's, which counts the spans of each export and drops them
(what a collector costs the mesh is the export; what it does with the spans is not the
mesh's). The tests' receivers that keep what they receive (``tests/harness/otlp.py``) are
built on the same server.

Example:
    >>> with SpanSink() as sink:                                         # doctest: +SKIP
    ...     os.environ.update(sink.env())
    ...     ...
    >>> sink.spans                                                        # doctest: +SKIP
    60412
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class OtlpHttpServer:
    """Answers OTLP/HTTP exports on 127.0.0.1 (a free port) in a thread of this process.

    A subclass says what to do with an export in :meth:`received`: called with the path
    (``/v1/traces``, ``/v1/metrics``, ...) and the body, gzip already undone, it returns the
    answer's protobuf bytes (empty is fine), or raises ``DecodeError`` for a 400.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        """What could not be decoded."""
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding", "") == "gzip":
                    body = gzip.decompress(body)
                try:
                    answer = server.received(self.path, body)
                except DecodeError as exc:
                    server.errors.append(f"undecodable export to {self.path}: {exc}")
                    self.send_error(400)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def received(self, path: str, body: bytes) -> bytes:
        """One export to ``path``: keep or count what it holds; the answer's bytes."""
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``, what ``OTEL_EXPORTER_OTLP_ENDPOINT`` names."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class SpanSink(OtlpHttpServer):
    """Counts the spans exported to it over OTLP/HTTP, in a thread of this process."""

    def __init__(self) -> None:
        super().__init__()
        self.spans = 0
        self.exports = 0

    def received(self, path: str, body: bytes) -> bytes:
        if path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            count = sum(
                len(scope.spans)
                for resource in request.resource_spans
                for scope in resource.scope_spans
            )
            with self._lock:
                self.spans += count
                self.exports += 1
        return b""

    def env(self) -> dict[str, str]:
        """The variables that make a process export its traces here (traces only)."""
        return {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{self.endpoint}/v1/traces",
            "OTEL_METRICS_EXPORTER": "none",
        }
