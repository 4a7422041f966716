"""The person's side of a tool call's approval: read what is asked, mint the approval.

``jetmesh approve WORKFLOW STEP`` finds the step's ``approval-requested`` event; when its
body is a :class:`~jetmesh.toolgate.ToolApprovalAsk` (a ``ctx.tool`` call waiting), it checks
that the arguments shown hash to the digest asked for, and mints, with the CLI's ingress
key, an approval token for that person bound to the workflow, the step, the tool and the
digest, sent as the verdict's ``approval``.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from .._exceptions import ConfigError
from ..envelope import type_name
from ..events import Event
from ..identity.approvals import DEFAULT_APPROVAL_TTL_S, mint_approval
from ..identity.certificates import Certificate
from ..identity.keystore import Identity
from ..mesh_protocols import Verifying
from .wire import ToolApprovalAsk, args_digest


class Minting(Verifying, Protocol):
    """What minting an approval takes: an ingress identity (its certificate and key)
    and the person's caller token verified."""

    @property
    def name(self) -> str: ...

    @property
    def certificate(self) -> Certificate: ...

    @property
    def identity(self) -> Identity: ...


def tool_ask(asked: Event) -> ToolApprovalAsk | None:
    """The tool call an ``approval-requested`` event asks about (None: not a tool call).

    Raises:
        ValueError: the event says it is a tool call but its args cannot be read or do
            not hash to its digest: nobody should approve what they cannot see.
    """
    if asked.body is None or asked.body.type != type_name(ToolApprovalAsk):
        return None
    try:
        ask = msgspec.json.decode(asked.body.value, type=ToolApprovalAsk)
    except msgspec.MsgspecError as exc:
        raise ValueError(f"the tool call asked about cannot be read: {exc}") from None
    if args_digest(ask.args) != ask.args_sha256:
        raise ValueError(
            f"the args shown for tool {ask.tool} do not hash to the digest asked for "
            f"({ask.args_sha256[:12]}...): not approving"
        )
    return ask


def describe(ask: ToolApprovalAsk) -> str:
    """One line for the person: the tool, its args, their digest."""
    shown = msgspec.json.encode(ask.args, order="sorted").decode()
    return f"tool {ask.tool} for {ask.agent}, args {shown}, sha256 {ask.args_sha256}"


async def approval_token(
    mesh: Minting,
    ask: ToolApprovalAsk,
    *,
    workflow: str,
    step: str,
    person_token: str,
    ttl_s: float = DEFAULT_APPROVAL_TTL_S,
) -> str:
    """An approval of ``ask`` at ``step`` of ``workflow`` for the person of
    ``person_token``, minted with ``mesh``'s (ingress) key.

    Raises:
        ConfigError: ``mesh`` is not an ingress.
        InvalidToken: ``person_token`` does not verify.
    """
    if not mesh.certificate.ingress:
        raise ConfigError(f"{mesh.name} is not an ingress; it cannot mint approvals")
    person = await mesh.verify_token(person_token)
    return mint_approval(
        mesh.identity.key,
        subject=person.subject,
        workflow=workflow,
        step=step,
        tool=ask.tool,
        args_sha256=ask.args_sha256,
        ttl_s=ttl_s,
    )
