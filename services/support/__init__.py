"""The customer-support mesh: seven roles, each its own process, and the tool gateway.

    caller --Ticket--> triage (router: ctx.model classifies)
                         |--Case--> billing | technical | product --KbQuery--> kb
                         |            | drafts with ctx.model, critic loop (refine) --> critic
                         |            | billing: refund (approval above the limit) --> toolgate
                         |            `--Case--> escalation (critic never approved, no approval)
                         `--Case--> escalation (unknown class) --handoff--> toolgate

Run one role: ``jetmesh run services.support.billing:agent`` (or ``python -m
services.support.billing``); ``python -m services.support`` runs every role, and
``toolgate``, as its own process; ``jetmesh demo`` runs them with the research mesh.
See docs/services.md.
"""

ROLES = ("triage", "billing", "technical", "product", "kb", "critic", "escalation")
"""Every role of the mesh, each a module of this package with an ``agent``."""

TOOLGATE = "services.toolgate:agent"
"""The tool gateway the mesh's refunds and hand-offs go through (its own package)."""

TEAMS = ("billing", "technical", "product")
"""The roles that draft answers (each with the knowledge base's articles of its team)."""
