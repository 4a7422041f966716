"""What a hop may do: the intersection of the caller's scopes and the agent's own.

The caller's scopes come from the verified caller token (minted at ingress, never
widened); the agent's are those its certificate was issued with (``Agent(scopes=...)``).
"""

from __future__ import annotations

from jetmesh import Agent, Context

KB_READ = "kb:read"
"""Read the knowledge base."""
REFUND_WRITE = "refund:write"
"""Pay money back through the payment system."""
HANDOFF_WRITE = "handoff:write"
"""Put a case in the people's queue."""


def permitted(ctx: Context, agent: Agent, scope: str) -> bool:
    """Both the caller and ``agent`` hold ``scope`` (``ctx.scopes``: the caller's scopes ∩
    the role's grant, as far as its certificate grants)."""
    return ctx.permits(scope) and scope in agent.scopes


def refusal(ctx: Context, agent: Agent, scope: str) -> str:
    """Why a hop may not use ``scope`` (for the event and the answer)."""
    who = [
        *([] if ctx.caller.has_scope(scope) else [f"the caller {ctx.caller.subject}"]),
        *([] if scope in agent.scopes else [f"the agent {agent.name}"]),
    ]
    return f"{scope} not granted to {' and '.join(who)}"
