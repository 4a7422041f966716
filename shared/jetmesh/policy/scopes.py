"""What a hop may do: the caller's scopes, cut down by every grant along the chain.

Example:
    >>> sorted(effective_scopes({"kb:read", "refund:write"}, {"kb:read"}))
    ['kb:read']
    >>> sorted(effective_scopes({"kb:read"}, {"kb:read", "refund:write"}, set()))
    []
"""

from __future__ import annotations

from collections.abc import Iterable


def effective_scopes(
    caller: Iterable[str], grant: Iterable[str], *narrowing: Iterable[str]
) -> frozenset[str]:
    """The scopes a hop may use: ``caller ∩ grant ∩ narrowing[0] ∩ ...``.

    Scopes are compared as exact strings; nothing widens them: a scope that the caller's
    token lacks is never added by an agent's grant, and a scope that a grant lacks is never
    passed on by a caller that has it.

    Args:
        caller: the scopes of the caller token minted at ingress.
        grant: the scopes the policy grants the agent role running the hop.
        *narrowing: narrower sets chosen along the chain (a hop that passes on fewer
            scopes than it has); each one can only remove scopes. The grants of the roles
            a task passed through are not narrowings by themselves: a router without
            ``kb:read`` may still route a caller's question to ``kb``, where the caller's
            scope and kb's grant meet.
    """
    result = frozenset(caller) & frozenset(grant)
    for step in narrowing:
        result &= frozenset(step)
    return result
