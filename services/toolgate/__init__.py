"""toolgate: the tool and credential gateway, an agent role of its own.

Agents never hold tool credentials: they call ``ctx.tool(name, args, ...)``, which sends
the request to this role. It checks the request against the policy (the sender's tools,
the scopes delegated to the request, a person's approval for irreversible tools), takes
the tool's credential from the secrets file (``JETMESH_TOOL_SECRETS_FILE``, re-read when it
changes) or the environment (``JETMESH_TOOL_<TOOL>_CREDENTIAL``) for that call only, runs
the tool and records the call. See docs/toolgate.md.

Run it: ``python -m services.toolgate`` (or ``jetmesh run services.toolgate:agent``); it
runs the support mesh's tools (:mod:`services.toolgate.support`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path

from jetmesh import Agent, Credentials, MeshSettings, Toolgate, ToolRegistry
from jetmesh.identity.keys import write_secret
from jetmesh.policy import Policy, mesh_policy
from jetmesh.toolgate import TOOLGATE
from services.support.systems import Desk
from services.toolgate.support import support_tools


def build(
    settings: MeshSettings | None = None,
    *,
    tools: ToolRegistry | None = None,
    policy: Policy | None = None,
    credentials: Credentials | None = None,
) -> Agent:
    """The ``toolgate`` role: the policy of ``settings.policy_file`` (or the shipped
    default), the support tools on the desk at ``settings.redis_url`` (as the ``toolgate``
    Redis user where the servers enforce the policy), and the credentials of
    ``settings.tool_secrets_file`` and the environment."""
    s = settings or MeshSettings()
    desk = Desk(s.redis_url, role=TOOLGATE, settings=s)
    gate = Toolgate(
        policy or mesh_policy(s.policy_file),
        tools if tools is not None else support_tools(desk),
        credentials or Credentials(s.tool_secrets_file),
    )
    return gate.agent()


def write_secrets(path: Path, tools: Iterable[str] = ("refund", "handoff")) -> Path:
    """Write a secrets file (``0600`` in a ``0700`` directory, never through a planted file
    or link) with a fresh random credential per tool, for a demo or a benchmark on the
    desk's stand-ins (which accept any credential)."""
    lines = [f'{tool} = "demo-{tool}-{secrets.token_hex(12)}"' for tool in tools]
    write_secret(path, "\n".join(lines) + "\n")
    return path


agent = build()
