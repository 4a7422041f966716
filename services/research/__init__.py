"""The research-report mesh: four roles, each its own process.

    caller --Question--> orchestrator (plans sub-questions with ctx.model)
                           |--SubQuestion x N--> researcher   (fan_out, a limit, partial)
                           |--WriteRequest-----> writer       \\  refine: until the reviewer's
                           |--CritiqueRequest--> reviewer     /  score reaches the threshold
                         <--Report (the text, its sources, the gaps, why the loop stopped)

Run one role: ``jetmesh run services.research.researcher:agent`` (or ``python -m
services.research.researcher``); ``python -m services.research`` runs every role as its
own process; ``jetmesh demo`` runs them with the support mesh. See docs/services.md.
"""

ROLES = ("orchestrator", "researcher", "writer", "reviewer")
"""Every role of the mesh, each a module of this package with an ``agent``."""
