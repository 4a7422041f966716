"""The tool gateway's messages: a request, its result, what a person is asked to approve,
and the record of each call in the workflow's log.

Arguments travel as a JSON object and are bound to an approval by :func:`args_digest`:
the hex SHA-256 of their canonical JSON (keys sorted at every level, no whitespace,
UTF-8, numbers as msgspec writes them: ``240.0`` stays ``240.0``, ``240`` stays ``240``).
Both sides compute it from the decoded value, so the bytes on the wire may differ in key
order and spacing.

Example:
    >>> args_digest({"order": "A-1", "amount_eur": 35.0}) == args_digest(
    ...     {"amount_eur": 35.0, "order": "A-1"})
    True
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

TOOLGATE: Final = "toolgate"
"""The tool gateway's role name: agents send tool requests to it like any call."""

TOOL: Final = "tool"
"""Event: a tool ran (or failed while running), or a request step's tool was answered
from the gateway's record (:data:`RECORDED`, :data:`RECONCILED`); its :class:`ToolRecord`
in ``body``, the tool in ``target``, the outcome in ``reason``, the args' digest in
``digest``. Only ``ok`` and ``error`` are runs of the tool."""
RECORDED: Final = "recorded"
"""A ``tool`` event's outcome: the tool ran for this request step already; its recorded
result was sent again and the tool was not run."""
RECONCILED: Final = "reconciled"
"""A ``tool`` event's outcome: a run left in doubt (its gateway stopped mid-call) was found
by the tool's target under the call's idempotency key, recorded, and not run again."""
TOOL_REFUSED: Final = "tool-refused"
"""Event: the gateway refused a tool call; its :class:`ToolRecord` in ``body``, the tool
in ``target``, the refusal's code in ``reason``, who asked and why in ``detail``."""


def canonical_json(args: Any) -> bytes:
    """The canonical JSON of ``args`` (a Struct, dict or other msgspec-encodable value)."""
    return msgspec.json.encode(msgspec.to_builtins(args), order="sorted")


def args_digest(args: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``args``: what an approval is bound to."""
    return hashlib.sha256(canonical_json(args)).hexdigest()


class ToolRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A task for the tool gateway: run ``tool`` with ``args`` for this task's caller."""

    __mesh_type__ = "mesh.ToolRequest/1"

    tool: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    """The tool's arguments (a JSON object)."""
    approval: str = ""
    """A person's approval token for this exact request (irreversible tools)."""


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """The gateway's answer to a :class:`ToolRequest` that ran. Refusals are error
    replies with the refusal's code (``ctx.tool`` raises the matching ``ToolRefused``)."""

    __mesh_type__ = "mesh.ToolResult/1"

    tool: str
    value: msgspec.Raw
    """What the tool returned (JSON)."""
    args_sha256: str
    approval: str = ""
    """The approval spent on this call (its ``jti``), if any."""
    approved_by: str = ""
    """Who approved it."""
    duration_ms: float = 0.0


class ToolApprovalAsk(msgspec.Struct, frozen=True, kw_only=True):
    """What a person approves: recorded in the ``approval-requested`` event's body, shown
    by ``jetmesh approve``, which mints an approval bound to it."""

    __mesh_type__ = "mesh.ToolApprovalAsk/1"

    tool: str
    args: dict[str, Any]
    args_sha256: str
    agent: str
    """The role that will call the tool."""


class ToolRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call as the gateway saw it: the body of ``tool`` and ``tool-refused``
    events. Never the credential: its fingerprint."""

    __mesh_type__ = "mesh.ToolRecord/1"

    tool: str
    sender: str
    """The role that asked (the task's verified sender)."""
    caller: str
    """On whose behalf (the caller token's subject)."""
    tenant: str
    args_sha256: str
    outcome: str
    """``ok`` (the tool ran), ``error`` (the tool failed), ``recorded`` (it ran for this
    step before: the recorded result, not run), ``reconciled`` (a run in doubt that the
    target found: not run) or the refusal's code."""
    detail: str = ""
    approval: str = ""
    """The approval's ``jti``, if one came with the request."""
    approved_by: str = ""
    credential: str = ""
    """The credential's fingerprint (``sha256:`` and 8 hex digits), never the credential."""
    duration_ms: float | None = None
