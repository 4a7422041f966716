"""Tools behind a gateway: agents never hold tool credentials.

- :mod:`~jetmesh.toolgate.wire`: the gateway's messages and the args' digest.
- :mod:`~jetmesh.toolgate.registry`: tools by name, each an async function of a ``ToolCall``.
- :mod:`~jetmesh.toolgate.credentials`: credentials from a secrets file (re-read when it
  changes) or the environment, for one call at a time.
- :mod:`~jetmesh.toolgate.secrets_file`: a secrets file of stand-in credentials (demos).
- :mod:`~jetmesh.toolgate.gateway`: the ``toolgate`` role's checks (policy, scopes, approvals)
  and runs.
- :mod:`~jetmesh.toolgate.mcp`: a remote MCP server's tools as the gateway's tools (the
  ``mcp`` SDK, in the optional ``gateway`` extra, imported only when a server is asked).

The agent side is ``ctx.tool`` (:mod:`jetmesh.runtime.tool_calls`); approval tokens are in
:mod:`jetmesh.identity.approvals`. See docs/toolgate.md.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> tools = ToolRegistry()                                          # doctest: +SKIP
    >>> tools.add("search", search, needs_credential=False)             # doctest: +SKIP
    >>> gate = Toolgate(policy, tools, Credentials(Path("secrets.toml")))  # doctest: +SKIP
    >>> agent = gate.agent()                                            # doctest: +SKIP
"""

from .._exceptions import McpToolError, McpUnauthorized
from .credentials import Credential, Credentials, env_name
from .gateway import Toolgate, delegated_scopes
from .mcp import McpTool, McpTools
from .registry import FindFn, Tool, ToolCall, ToolFn, ToolRegistry
from .secrets_file import write_secrets
from .wire import (
    RECONCILED,
    RECORDED,
    TOOL,
    TOOL_REFUSED,
    TOOLGATE,
    ToolApprovalAsk,
    ToolRecord,
    ToolRequest,
    ToolResult,
    args_digest,
    canonical_json,
)

__all__ = [
    "RECONCILED",
    "RECORDED",
    "TOOL",
    "TOOLGATE",
    "TOOL_REFUSED",
    "Credential",
    "Credentials",
    "FindFn",
    "McpTool",
    "McpToolError",
    "McpTools",
    "McpUnauthorized",
    "Tool",
    "ToolApprovalAsk",
    "ToolCall",
    "ToolFn",
    "ToolRecord",
    "ToolRegistry",
    "ToolRequest",
    "ToolResult",
    "Toolgate",
    "args_digest",
    "canonical_json",
    "delegated_scopes",
    "env_name",
    "write_secrets",
]
