"""toolgate: the tool and credential gateway as the support mesh runs it, with the mesh's
tools (:mod:`services.support.tools`).

Agents never hold tool credentials: they call ``ctx.tool(name, args, ...)``, which sends
the request to this role. It checks the request against the policy (the sender's tools,
the scopes delegated to the request, a person's approval for irreversible tools), takes
the tool's credential from the secrets file (``JETMESH_TOOL_SECRETS_FILE``, re-read when it
changes) or the environment (``JETMESH_TOOL_<TOOL>_CREDENTIAL``) for that call only, runs
the tool and records the call. See docs/toolgate.md.

Run it: ``jetmesh run services.support.toolgate:agent`` (``python -m services.support``
runs it with the mesh's roles).
"""

from __future__ import annotations

from jetmesh import Agent, Credentials, MeshSettings, Toolgate, ToolRegistry
from jetmesh.policy import Policy, mesh_policy
from jetmesh.toolgate import TOOLGATE
from services.support import POLICY
from services.support.systems import Desk
from services.support.tools import support_tools


def build(
    settings: MeshSettings | None = None,
    *,
    tools: ToolRegistry | None = None,
    policy: Policy | None = None,
    credentials: Credentials | None = None,
) -> Agent:
    """The ``toolgate`` role: the policy of ``settings.policy_file`` (or the mesh's own,
    :data:`services.support.POLICY`), the support tools on the desk at
    ``settings.redis_url`` (as the ``toolgate`` Redis user where the servers enforce the
    policy), and the credentials of ``settings.tool_secrets_file`` and the environment."""
    s = settings or MeshSettings()
    desk = Desk(s.redis_url, role=TOOLGATE, settings=s)
    gate = Toolgate(
        policy or mesh_policy(s.policy_file or POLICY),
        tools if tools is not None else support_tools(desk),
        credentials or Credentials(s.tool_secrets_file),
    )
    return gate.agent()


agent = build()
