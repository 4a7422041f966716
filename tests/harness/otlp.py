"""An OTLP/HTTP trace receiver for tests: a small ``http.server`` on 127.0.0.1
(:class:`loadtest.otlp_sink.OtlpHttpServer`) that decodes
the ``ExportTraceServiceRequest`` of each ``POST /v1/traces`` (protobuf, gzip or not) and
keeps its spans, as a tracing backend would receive them from the processes of a mesh
(other exports, ``/v1/metrics``, are answered and dropped).

Example:
    >>> with OtlpReceiver() as receiver:                                 # doctest: +SKIP
    ...     env = receiver.env()          # OTEL_EXPORTER_OTLP_ENDPOINT and a short delay
    ...     ...                           # run processes with env
    ...     spans = receiver.wait_for(lambda spans: len(spans) >= 3)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from loadtest.otlp_sink import OtlpHttpServer

KINDS = {
    ProtoSpan.SPAN_KIND_INTERNAL: "INTERNAL",
    ProtoSpan.SPAN_KIND_SERVER: "SERVER",
    ProtoSpan.SPAN_KIND_CLIENT: "CLIENT",
    ProtoSpan.SPAN_KIND_PRODUCER: "PRODUCER",
    ProtoSpan.SPAN_KIND_CONSUMER: "CONSUMER",
}
STATUSES = {Status.STATUS_CODE_UNSET: "UNSET", Status.STATUS_CODE_OK: "OK"}
STATUSES[Status.STATUS_CODE_ERROR] = "ERROR"


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


@dataclass(frozen=True)
class SpanEvent:
    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (ids in lowercase hex, as backends show them)."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    events: tuple[SpanEvent, ...]
    service: str
    """The ``service.name`` of the process that exported it."""
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def event(self, name: str) -> SpanEvent | None:
        return next((e for e in self.events if e.name == name), None)


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        name=s.name,
                        kind=KINDS.get(s.kind, "UNSPECIFIED"),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        status=STATUSES.get(s.status.code, "UNSET"),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        events=tuple(
                            SpanEvent(e.name, {a.key: _value(a.value) for a in e.attributes})
                            for e in s.events
                        ),
                        service=str(resource.get("service.name", "")),
                        resource=resource,
                    )
                )
    return spans


class OtlpReceiver(OtlpHttpServer):
    """Receives OTLP/HTTP trace exports on a free loopback port, in a thread."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.other_posts: list[str] = []
        """The paths of exports other than traces (``/v1/metrics``, ...)."""

    def received(self, path: str, body: bytes) -> bytes:
        if path != "/v1/traces":  # metrics, logs: accepted, not kept
            self.other_posts.append(path)
            return b""
        spans = decode_spans(body)
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1
        return ExportTraceServiceResponse().SerializeToString()

    def env(self, schedule_delay_ms: int = 200) -> dict[str, str]:
        """The variables that make a process export its traces here."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": str(schedule_delay_ms),
        }

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """The spans received once ``done`` holds for them (or when ``timeout`` passed:
        the caller's assertions then say what is missing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.snapshot()
            if done(spans):
                return spans
            time.sleep(0.1)
        return self.snapshot()


def tree(spans: list[ReceivedSpan]) -> Iterator[tuple[int, ReceivedSpan]]:
    """The spans in trace order: each root, then its children by start time, depth first,
    with their depth."""
    children: dict[str, list[ReceivedSpan]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)

    def walk(parent: str, depth: int) -> Iterator[tuple[int, ReceivedSpan]]:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            yield depth, s
            yield from walk(s.span_id, depth + 1)

    yield from walk("", 0)


def waterfall(spans: list[ReceivedSpan], width: int = 32) -> str:
    """The spans drawn as a tracing UI's waterfall: one line per span, indented under its
    parent, with its service, its duration and a bar placed on the trace's timeline (``!``:
    ERROR status), and under it a line per event (``jetmesh.*``: its reason)."""
    if not spans:
        return ""
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    rows = list(tree(spans))
    label_width = max(2 * d + len(s.name) for d, s in rows) + 2
    service_width = max(len(s.service) for _, s in rows) + 2
    lines = []
    for depth, s in rows:
        left = int((s.start_ns - start) / total * width)
        length = max(1, round((s.end_ns - s.start_ns) / total * width))
        bar = (" " * left + "█" * length).ljust(width)[:width]
        flag = " !" if s.status == "ERROR" else ""
        label = ("  " * depth + s.name).ljust(label_width)
        lines.append(
            f"{label}{s.service.ljust(service_width)}{s.duration_ms:8.1f} ms |{bar}|{flag}"
        )
        for event in s.events:
            if event.name.startswith("jetmesh."):
                why = event.attributes.get("jetmesh.reason") or event.attributes.get(
                    "jetmesh.delivery.attempt", ""
                )
                lines.append(f"{'  ' * (depth + 1)}· {event.name}: {why}")
    return "\n".join(lines)
