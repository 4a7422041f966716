"""OpenTelemetry for the mesh: traces (traces.py) and metrics (metrics.py) set up from the standard OTEL_* variables."""
