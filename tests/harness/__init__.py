"""Integration tests: an in-process mesh and agent processes on real NATS and Redis servers."""
