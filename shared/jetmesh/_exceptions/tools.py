"""The tool gateway refusing a tool call (``ToolRefused`` and its stable reason codes). (The
whole tree is drawn in :mod:`jetmesh._exceptions`.)"""

from __future__ import annotations

from .base import EffectInDoubt, MeshError


class ToolRefused(MeshError):
    """A tool call was not carried out: the tool did not run, and will not for this
    request as it stands. Raised by ``ctx.tool`` (refused in the agent, or answered so by
    the tool gateway) and by the gateway's checks; a handler that lets it escape fails at
    once with its ``reason`` (no retry: the same request would be refused again).

    Attributes:
        tool: the tool asked for.
        reason: a stable code (the class's ``code``), also in the ``tool-refused`` event.
        detail: who asked, for whom, and why it was refused.
    """

    code = "tool-refused"

    def __init__(self, tool: str, detail: str) -> None:
        super().__init__(f"{self.code}: {tool}: {detail}")
        self.tool = tool
        self.detail = detail

    @property
    def reason(self) -> str:
        return self.code


class UnknownTool(ToolRefused):
    """The tool gateway has no tool of that name."""

    code = "unknown-tool"


class ToolNotGranted(ToolRefused):
    """The requesting role (the task's sender) has no such tool in the policy, or may not
    call the tool gateway."""

    code = "tool-not-granted"


class CallerInvalid(ToolRefused):
    """The caller token no longer verifies when the gateway checks it again (expired
    meanwhile, or its ingress key revoked)."""

    code = "caller-invalid"


class ToolScopeDenied(ToolRefused):
    """The scope the tool needs is not among the scopes delegated to the request."""

    code = "scope-not-delegated"


class CredentialMissing(ToolRefused):
    """The tool gateway holds no credential for the tool (environment or secrets file)."""

    code = "credential-missing"


class ApprovalMissing(ToolRefused):
    """The call needs a person's approval (an irreversible tool) and came without one."""

    code = "approval-missing"


class ApprovalDenied(ToolRefused):
    """The person asked to approve the call denied it.

    Attributes:
        by: who denied it.
        note: their reason.
    """

    code = "approval-denied"

    def __init__(self, tool: str, detail: str, *, by: str = "", note: str = "") -> None:
        super().__init__(tool, detail)
        self.by = by
        self.note = note


class ApprovalMismatch(ToolRefused):
    """The approval was given for another workflow, step, tool or arguments."""

    code = "approval-mismatch"


class ApprovalReused(ToolRefused):
    """The approval was used before: each approves one request, once."""

    code = "approval-reused"


class ApprovalInvalid(ToolRefused):
    """The approval token is forged or malformed, not EdDSA, not minted by an ingress, or
    its key is unknown or revoked."""

    code = "approval-invalid"


class ApprovalExpired(ApprovalInvalid):
    """The approval token is past its expiry (or not valid yet)."""

    code = "approval-expired"


class ToolInDoubt(ToolRefused, EffectInDoubt):
    """The tool gateway found a run of the tool for this request step that a gateway
    started and never recorded (it died mid-call): the call may or may not have happened.
    The tool declares neither ``find`` nor ``idempotent``, so the gateway does not run it
    again; a person checks the target and decides (docs/toolgate.md)."""

    code = "tool-in-doubt"


class McpToolError(ToolRefused):
    """An MCP server's tool (:mod:`jetmesh.toolgate.mcp`) answered its call with an error
    (``isError``), or its server answered with a protocol error (an unknown tool, invalid
    arguments)."""

    code = "mcp-tool-error"


class McpUnauthorized(McpToolError):
    """An MCP server refused the tool gateway's credential for the tool (HTTP 401 or 403)."""

    code = "mcp-unauthorized"
