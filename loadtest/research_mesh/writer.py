"""The research mesh's writer: ``jetmesh run loadtest.research_mesh.writer:agent``."""

from loadtest.research_shape import writer as agent

__all__ = ["agent"]
