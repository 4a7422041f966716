"""The customer-support mesh: seven roles, each its own process.

    caller --Ticket--> triage (router: ctx.model classifies)
                         |--Case--> billing | technical | product --KbQuery--> kb
                         |            | drafts with ctx.model, critic loop (refine) --> critic
                         |            | billing: refund (approval above the limit, ctx.once)
                         |            `--Case--> escalation (critic never approved, no approval)
                         `--Case--> escalation (unknown class)

Run one role: ``jetmesh run services.support.billing:agent`` (or ``python -m
services.support.billing``); ``python -m services.support`` runs every role as its own
process; ``jetmesh demo`` runs them with the research mesh. See docs/services.md.
"""

ROLES = ("triage", "billing", "technical", "product", "kb", "critic", "escalation")
"""Every role of the mesh, each a module of this package with an ``agent``."""

TEAMS = ("billing", "technical", "product")
"""The roles that draft answers (each with the knowledge base's articles of its team)."""
