"""billing: answers billing tickets from the knowledge base, in a critic loop, and pays
refunds through the tool gateway (``ctx.tool("refund", ...)``): billing never holds the
payment system's credential. A refund is irreversible: above ``refund_limit_eur`` (and
wherever the policy's ``approve_above`` says) it waits for a person's approval bound to
the exact refund (``jetmesh approve|deny WORKFLOW STEP``), and a case nobody decides in
time goes to escalation. The gateway runs the refund once per step, with an idempotency
key, so a redelivered or re-run task never pays twice. Scope ``refund:write`` (the
caller's and its own)."""

from __future__ import annotations

import msgspec

from jetmesh import Agent, ApprovalDenied, ApprovalTimeout, Context
from jetmesh.cli import run_forever
from services.support.scopes import REFUND_WRITE, permitted, refusal
from services.support.settings import SupportSettings
from services.support.teams import escalate, resolve
from services.support.wire import Case, Refund, RefundAsk, RefundReceipt, Resolution

TEAM = "billing"
REFUND = "refund"
"""The tool that pays a refund."""


def build(settings: SupportSettings | None = None) -> Agent:
    """The ``billing`` role, with its refund limit."""
    config = settings or SupportSettings()
    agent = Agent(
        TEAM,
        scopes=[REFUND_WRITE],
        description="drafts a billing answer in a critic loop; refunds (approval above the limit)",
    )

    @agent.handler
    async def answer(case: Case, ctx: Context) -> Resolution:
        if case.ticket.refund is None:
            return await resolve(ctx, case, TEAM, config)
        return await refund(ctx, case, case.ticket.refund)

    async def refund(ctx: Context, case: Case, ask: RefundAsk) -> Resolution:
        ticket = case.ticket
        action = f"refund {ask.amount_eur:.2f} EUR to {ticket.customer} for order {ask.order}"
        if not permitted(ctx, agent, REFUND_WRITE):
            why = refusal(ctx, agent, REFUND_WRITE)
            await ctx.emit("scope-refused", why)
            return await escalate(ctx, case, TEAM, [], f"{action}: {why}", config)
        over = ask.amount_eur > config.refund_limit_eur
        try:
            receipt = await ctx.tool(
                REFUND,
                Refund(
                    order=ask.order,
                    amount_eur=ask.amount_eur,
                    customer=ticket.customer,
                    ticket=ticket.id,
                ),
                returns=RefundReceipt,
                approval=over,
                action=action
                + (f"; over the {config.refund_limit_eur:g} EUR limit" if over else ""),
                approval_timeout=config.approval_timeout_s,
                timeout=config.call_timeout_s,
            )
        except ApprovalTimeout:
            waited = f"nobody approved or denied it within {config.approval_timeout_s:g} s"
            return await escalate(ctx, case, TEAM, [], f"{action}: {waited}", config)
        except ApprovalDenied as denied:
            because = f": {denied.note}" if denied.note else ""
            told = f"Your refund of {ask.amount_eur:.2f} EUR was not approved{because}."
            answered = await resolve(ctx, case, TEAM, config, notes=[told])
            return msgspec.structs.replace(
                answered,
                status="refund-denied" if answered.status == "answered" else answered.status,
                note=f"refund denied by {denied.by}{because}",
            )
        told = f"We refunded {ask.amount_eur:.2f} EUR for order {ask.order} ({receipt.id})."
        answered = await resolve(ctx, case, TEAM, config, notes=[told])
        return msgspec.structs.replace(
            answered,
            status="refunded" if answered.status == "answered" else answered.status,
            refund=receipt,
            note=f"approved by {receipt.approved_by}"
            if receipt.approved_by
            else "under the approval limit",
        )

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
