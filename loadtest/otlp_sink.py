"""An OTLP/HTTP trace sink for benchmarks: answers ``POST /v1/traces`` on a free loopback
port, counts the spans of each export and drops them (what a collector costs the mesh is
the export; what it does with the spans is not the mesh's).

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
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class SpanSink:
    """Counts the spans exported to it over OTLP/HTTP, in a thread of this process."""

    def __init__(self) -> None:
        self.spans = 0
        self.exports = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/v1/traces":
                    if self.headers.get("Content-Encoding", "") == "gzip":
                        body = gzip.decompress(body)
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    count = sum(
                        len(scope.spans)
                        for resource in request.resource_spans
                        for scope in resource.scope_spans
                    )
                    with sink._lock:
                        sink.spans += count
                        sink.exports += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def env(self) -> dict[str, str]:
        """The variables that make a process export its traces here (traces only)."""
        host, port = self._server.server_address[:2]
        return {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{host!s}:{port}/v1/traces",
            "OTEL_METRICS_EXPORTER": "none",
        }

    def __enter__(self) -> SpanSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
