"""OpenTelemetry for the mesh: traces (:mod:`.traces`) and metrics (:mod:`.metrics`), set
up from the standard ``OTEL_*`` variables (docs/observability.md).

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    True
    >>> trace_id_of("01J9ZQ4Y7E0000000000000000")
    '01927f7278ee00000000000000000000'
"""

from .traces import (
    FROM_RECORD,
    REPLAYED,
    install_tracing,
    shutdown_tracing,
    trace_id_of,
    tracing_configured,
    tracing_on,
)

__all__ = [
    "FROM_RECORD",
    "REPLAYED",
    "install_tracing",
    "shutdown_tracing",
    "trace_id_of",
    "tracing_configured",
    "tracing_on",
]
