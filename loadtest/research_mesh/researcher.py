"""The research mesh's researcher: ``jetmesh run loadtest.research_mesh.researcher:agent``."""

from loadtest.research_shape import researcher as agent

__all__ = ["agent"]
