"""The research-shaped agents of :mod:`loadtest.research_shape` as a mesh package: a
module per role, each with its ``agent``, so that ``jetmesh run
loadtest.research_mesh.<role>:agent`` runs one and a load scenario's ``launch =
"loadtest.research_mesh"`` runs them all (``loadtest/scenarios/chaos.toml``)."""

ROLES = ("orchestrator", "researcher", "writer", "critic")
"""The roles, one process each per replica."""
