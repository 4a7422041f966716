"""W3C trace context in NATS headers: one trace per workflow, one span id per message.

The trace id is derived from the workflow id (a ULID is 128 bits, as is a trace id), so
every process that touches a workflow lands in the same trace without any coordination.
With tracing on (:mod:`jetmesh.telemetry.traces`), the span id is the span that sends the
message (a task's ``send``, a handler's ``process`` for its replies and events), so the
receiver's span is its child; with tracing off it is a random one.
"""

from __future__ import annotations

from random import getrandbits

from ..telemetry.traces import span_header, tracing_on
from ..telemetry.traces import trace_id_of as trace_id_of
from ..telemetry.traces import trace_number as trace_number

TRACEPARENT_HEADER = "traceparent"


def traceparent(workflow: str, span_id: str | None = None) -> str:
    """A ``traceparent`` header value for a new message of ``workflow``: its span id is
    ``span_id``, else the current span's (tracing on, a span of this workflow), else a
    random one."""
    if span_id is None and tracing_on():
        current = span_header(trace_number(workflow))
        if current is not None:
            return f"00-{trace_id_of(workflow)}-{current[0]:016x}-{current[1]:02x}"
    return f"00-{trace_id_of(workflow)}-{span_id or f'{getrandbits(64):016x}'}-01"
