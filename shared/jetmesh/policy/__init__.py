"""The policy: one file that says what each agent role may do, and what follows from it.

- :mod:`~jetmesh.policy.model`: the TOML file, validated (roles, calls, scopes, tools).
- :mod:`~jetmesh.policy.budgets`: model budgets by caller and by tenant.
- :mod:`~jetmesh.policy.scopes`: the scopes of a hop (caller ∩ grant ∩ narrowings).
- :mod:`~jetmesh.policy.derive`: a role's NATS subjects and Redis key patterns.
- :mod:`~jetmesh.policy.servers`: nats-server users (nkeys) and Redis ACL users from it.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> policy = load_policy(Path("services/support/policy.toml"))  # doctest: +SKIP
    >>> role_permissions(policy, "kb", MeshSettings()).consume  # doctest: +SKIP
    'mesh.agent.kb.task'
"""

from .._exceptions import PolicyError
from .budgets import Budget, Budgets
from .derive import RolePermissions, all_permissions, inbox_prefix, role_permissions
from .model import (
    Policy,
    RoleGrant,
    ToolGrant,
    default_policy,
    load_policy,
    mesh_policy,
    parse_policy,
    policy_of,
)
from .scopes import effective_scopes

__all__ = [
    "Budget",
    "Budgets",
    "Policy",
    "PolicyError",
    "RoleGrant",
    "RolePermissions",
    "ToolGrant",
    "all_permissions",
    "default_policy",
    "effective_scopes",
    "inbox_prefix",
    "load_policy",
    "mesh_policy",
    "parse_policy",
    "policy_of",
    "role_permissions",
]
