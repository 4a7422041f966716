"""The research mesh's critic: ``jetmesh run loadtest.research_mesh.critic:agent``."""

from loadtest.research_shape import critic as agent

__all__ = ["agent"]
