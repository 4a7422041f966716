"""The customer-support mesh: seven roles, each its own process, and the tool gateway.

    caller --Ticket--> triage (router: ctx.model classifies)
                         |--Case--> billing | technical | product --KbQuery--> kb
                         |            | drafts with ctx.model, critic loop (refine) --> critic
                         |            | billing: refund (approval above the limit) --> toolgate
                         |            `--Case--> escalation (critic never approved, no approval)
                         `--Case--> escalation (unknown class) --handoff--> toolgate

Everything of the mesh is in this folder: its roles (a module each with an ``agent``), its
wire types (:mod:`~services.support.wire`), the tools its gateway runs
(:mod:`~services.support.tools`, :mod:`~services.support.toolgate`), its policy
(``policy.toml``) and its knowledge base (``kb/``).

Run one role: ``jetmesh run services.support.billing:agent`` (or ``python -m
services.support.billing``); ``python -m services.support`` (``jetmesh launch
services.support``) runs every role, and ``toolgate``, as its own process;
``python -m services.demo`` runs them with the research mesh. See docs/services.md.
"""

from pathlib import Path

ROLES = ("triage", "billing", "technical", "product", "kb", "critic", "escalation")
"""Every role of the mesh, each a module of this package with an ``agent``."""

PROCESSES = {"toolgate": "services.support.toolgate:agent"}
"""Processes of the mesh besides its roles: the tool gateway its refunds and hand-offs go
through, with the mesh's tools."""

TOOL_CREDENTIALS = ("refund", "handoff")
"""The tools that need a credential: without ``JETMESH_TOOL_SECRETS_FILE``, ``jetmesh
launch`` writes a stand-in for each (the desk's stand-ins accept any)."""

POLICY = Path(__file__).with_name("policy.toml")
"""The mesh's policy: its roles, laid over the library's (``cli``, ``toolgate``)."""

TEAMS = ("billing", "technical", "product")
"""The roles that draft answers (each with the knowledge base's articles of its team)."""
