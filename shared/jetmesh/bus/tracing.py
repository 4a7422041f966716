"""W3C trace context in NATS headers: one trace per workflow, one span id per message.

The trace id is derived from the workflow id (a ULID is 128 bits, as is a trace id), so
every process that touches a workflow lands in the same trace without any coordination.
"""

from __future__ import annotations

import os
from functools import lru_cache
from random import getrandbits

from ..ids import id_value

TRACEPARENT_HEADER = "traceparent"


@lru_cache(maxsize=8192)
def trace_id_of(workflow: str) -> str:
    """The 32-hex-digit trace id of a workflow."""
    try:
        return f"{id_value(workflow):032x}"
    except ValueError:
        return os.urandom(16).hex()


def traceparent(workflow: str, span_id: str | None = None) -> str:
    """A ``traceparent`` header value for a new message of ``workflow``."""
    return f"00-{trace_id_of(workflow)}-{span_id or f'{getrandbits(64):016x}'}-01"
