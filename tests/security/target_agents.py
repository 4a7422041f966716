"""The mesh the compromised-role tests attack, each role its own ``jetmesh run
tests.security.target_agents:<role>`` process (run from the repository root).

``billing`` answers a :class:`Refund`: it asks ``kb`` (so ``kb`` may answer billing's
calls), then ``critic`` (which takes ``critic_pause_s``: the window in which an attacker
races the real answer), optionally waits for a person's ``approval`` signal, then has
``payments`` pay. ``payments`` adds each payment to the workflow's working memory, where
the tests count the effects (as the admin).
"""

from __future__ import annotations

import asyncio

import msgspec

from jetmesh import Agent, Context

POLICY = """
max_delegation_depth = 4

[roles.cli]
ingress = true
calls = ["billing"]

[roles.billing]
calls = ["kb", "critic", "payments"]
scopes = ["refund:write", "kb:read"]

[roles.kb]
scopes = ["kb:read"]

[roles.critic]

[roles.payments]
scopes = ["refund:write"]
"""
ROLES = ("billing", "kb", "critic", "payments")
SCOPES = ["refund:write", "kb:read"]
PAID = "paid"
"""The working-memory key (of ``payments``) that adds up what was paid in a workflow."""


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    __mesh_type__ = "target.Refund/1"

    order: str
    amount: float
    critic_pause_s: float = 0.0
    pay_pause_s: float = 0.0
    approval: bool = False
    approval_timeout_s: float = 30.0


class Lookup(msgspec.Struct, frozen=True):
    __mesh_type__ = "target.Lookup/1"

    order: str


class Hits(msgspec.Struct, frozen=True):
    __mesh_type__ = "target.Hits/1"

    text: str


class Draft(msgspec.Struct, frozen=True):
    __mesh_type__ = "target.Draft/1"

    text: str
    pause_s: float = 0.0


class Score(msgspec.Struct, frozen=True):
    __mesh_type__ = "target.Score/1"

    score: float


class Pay(msgspec.Struct, frozen=True):
    __mesh_type__ = "target.Pay/1"

    order: str
    amount: float
    pause_s: float = 0.0


class Paid(msgspec.Struct, frozen=True):
    __mesh_type__ = "target.Paid/1"

    id: str
    amount: float


class Approval(msgspec.Struct, frozen=True):
    __mesh_type__ = "target.Approval/1"

    ok: bool


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    __mesh_type__ = "target.Outcome/1"

    status: str
    score: float
    paid: str = ""
    amount: float = 0.0
    approved_by: str = ""


billing = Agent("billing", scopes=["refund:write", "kb:read"], description="pays refunds")


@billing.handler
async def refund(r: Refund, ctx: Context) -> Outcome:
    hits = await ctx.call("kb", Lookup(r.order), returns=Hits)
    score = await ctx.call("critic", Draft(hits.text, r.critic_pause_s), returns=Score)
    approved_by = ""
    if r.approval:
        got = await ctx.wait_for("approval", returns=Approval, timeout=r.approval_timeout_s)
        if not got.value.ok:
            return Outcome(status="denied", score=score.score, approved_by=got.caller)
        approved_by = got.caller
    paid = await ctx.call("payments", Pay(r.order, r.amount, r.pay_pause_s), returns=Paid)
    return Outcome(
        status="refunded",
        score=score.score,
        paid=paid.id,
        amount=paid.amount,
        approved_by=approved_by,
    )


kb = Agent("kb", scopes=["kb:read"], description="looks up the refund policy")


@kb.handler
async def lookup(q: Lookup, ctx: Context) -> Hits:
    return Hits(f"refund policy for order {q.order}")


critic = Agent("critic", description="scores a draft")


@critic.handler
async def judge(d: Draft, ctx: Context) -> Score:
    await asyncio.sleep(d.pause_s)
    return Score(0.4)


payments = Agent("payments", scopes=["refund:write"], description="pays, and counts it")


@payments.handler
async def pay(p: Pay, ctx: Context) -> Paid:
    await asyncio.sleep(p.pause_s)
    await ctx.memory.update(PAID, float, lambda total: (total or 0.0) + p.amount)
    return Paid(f"pay-{p.order}", p.amount)
