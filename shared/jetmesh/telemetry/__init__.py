"""OpenTelemetry for the mesh: traces (:mod:`.traces`) and metrics (:mod:`.metrics`), set
up from the standard ``OTEL_*`` variables."""
