"""The research mesh's orchestrator: ``jetmesh run loadtest.research_mesh.orchestrator:agent``."""

from loadtest.research_shape import orchestrator as agent

__all__ = ["agent"]
