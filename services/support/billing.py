"""billing: answers billing tickets from the knowledge base, in a critic loop, and pays
refunds. A refund is irreversible: above ``refund_limit_eur`` it waits for a person's
approval (``require_approval``; ``jetmesh approve|deny WORKFLOW STEP``), and a case nobody
decides in time goes to escalation. The payment runs through ``ctx.once`` with an
idempotency key, so a redelivered or re-run task never pays twice. Scope
``refund:write`` (the caller's and its own)."""

from __future__ import annotations

import msgspec

from jetmesh import Agent, ApprovalTimeout, Context, run_forever
from jetmesh.patterns import require_approval
from services.support.policy import REFUND_WRITE, permitted, refusal
from services.support.settings import SupportSettings
from services.support.systems import Desk
from services.support.teams import escalate, resolve
from subjects.support import Case, RefundAsk, RefundReceipt, Resolution

TEAM = "billing"
REFUND = "refund"
"""The ``ctx.once`` key of the payment."""


def build(settings: SupportSettings | None = None, desk: Desk | None = None) -> Agent:
    """The ``billing`` role, with its refund limit and payment system."""
    config = settings or SupportSettings()
    payments = desk or Desk()
    agent = Agent(TEAM, scopes=[REFUND_WRITE], description="billing answers and refunds")

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
        approved_by = ""
        if ask.amount_eur > config.refund_limit_eur:
            try:
                decision = await require_approval(
                    ctx,
                    action,
                    timeout=config.approval_timeout_s,
                    detail=f"over the {config.refund_limit_eur:g} EUR limit; ticket {ticket.id}",
                )
            except ApprovalTimeout:
                waited = f"nobody approved or denied it within {config.approval_timeout_s:g} s"
                return await escalate(ctx, case, TEAM, [], f"{action}: {waited}", config)
            if not decision.approved:
                because = f": {decision.note}" if decision.note else ""
                told = f"Your refund of {ask.amount_eur:.2f} EUR was not approved{because}."
                answered = await resolve(ctx, case, TEAM, config, notes=[told])
                return msgspec.structs.replace(
                    answered,
                    status="refund-denied" if answered.status == "answered" else answered.status,
                    note=f"refund denied by {decision.by}{because}",
                )
            approved_by = decision.by
        key = f"{ctx.workflow}/{ctx.step}/{REFUND}"
        receipt = await ctx.once(
            REFUND,
            lambda: payments.refund(key, ask.order, ask.amount_eur, approved_by),
            returns=RefundReceipt,
            reconcile=lambda: payments.find_refund(key),
        )
        told = f"We refunded {ask.amount_eur:.2f} EUR for order {ask.order} ({receipt.id})."
        answered = await resolve(ctx, case, TEAM, config, notes=[told])
        return msgspec.structs.replace(
            answered,
            status="refunded" if answered.status == "answered" else answered.status,
            refund=receipt,
            note=f"approved by {approved_by}" if approved_by else "under the approval limit",
        )

    return agent


agent = build()

if __name__ == "__main__":
    run_forever([agent])
