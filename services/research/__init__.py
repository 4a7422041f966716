"""The research-report mesh: four roles, each its own process.

    caller --Question--> orchestrator (plans sub-questions with ctx.model)
                           |--SubQuestion x N--> researcher   (fan_out, a limit, partial)
                           |--WriteRequest-----> writer       \\  refine: until the reviewer's
                           |--CritiqueRequest--> reviewer     /  score reaches the threshold
                         <--Report (the text, its sources, the gaps, why the loop stopped)

Everything of the mesh is in this folder: its roles (a module each with an ``agent``), its
wire types (:mod:`~services.research.wire`), its policy (``policy.toml``) and its corpus
(``corpus/``).

Run one role: ``jetmesh run services.research.researcher:agent`` (or ``python -m
services.research.researcher``); ``python -m services.research`` (``jetmesh launch
services.research``) runs every role as its own process; ``python -m services.demo`` runs
them with the support mesh. See docs/services.md.
"""

from pathlib import Path

ROLES = ("orchestrator", "researcher", "writer", "reviewer")
"""Every role of the mesh, each a module of this package with an ``agent``."""

POLICY = Path(__file__).with_name("policy.toml")
"""The mesh's policy: its roles, laid over the library's (``cli``, ``toolgate``)."""
