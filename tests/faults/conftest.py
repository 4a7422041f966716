"""Fault tests use the integration fixtures (an in-process mesh, agent processes)."""

from tests.integration.conftest import agent_processes, mesh

__all__ = ["agent_processes", "mesh"]
