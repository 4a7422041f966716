"""What a support chaos run is asked to do and what it reports (loadtest/chaos_support.py):
its configuration, with the tickets it sends, and the report with its targets and its printed
form (the counts from loadtest/support_audit.py among them)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from jetmesh import MeshSettings
from loadtest.support_audit import Audit
from services import support
from services.support.settings import DEFAULT_REFUND_LIMIT_EUR
from services.support.wire import RefundAsk, Ticket


@dataclass(frozen=True)
class SupportChaosConfig:
    """One run."""

    tickets: int = 300
    in_flight: int = 12
    agent_kills: int = 15
    server_kills: int = 2
    """SIGKILLs of nats-server, and as many of redis-server."""
    over_limit: int = 5
    """Tickets over the approval limit, approved by a person (among ``tickets``)."""
    replicas: int = 2
    """Processes per role."""
    request_timeout_s: float = 60.0
    """How long the ingress waits before asking again (same workflow)."""
    ticket_seconds: float = 300.0
    """How long the ingress keeps asking about one ticket."""
    pause_s: tuple[float, float] = (0.2, 1.0)
    """Random pause before each kill (besides the load's pacing)."""
    down_s: tuple[float, float] = (0.5, 2.0)
    """How long a killed server stays down before ``jetmesh up``."""
    max_seconds: float = 1200.0
    """Deadline of the load; what is unanswered then counts as unfinished."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.tickets < 1 or self.in_flight < 1 or self.replicas < 1:
            raise ValueError("need tickets, in_flight and replicas >= 1")
        if self.agent_kills < 0 or self.server_kills < 0:
            raise ValueError("kills cannot be negative")
        if not 0 <= self.over_limit <= self.tickets:
            raise ValueError("over_limit must be between 0 and tickets")

    def ticket(self, run: str, i: int) -> Ticket:
        """Ticket ``i``: its own order; ``over_limit`` of them, spread, over the limit."""
        step = self.tickets // self.over_limit if self.over_limit else 0
        over = step > 0 and i % step == step // 2
        amount = 150.0 + i % 200 if over else 5.0 + i % 90
        order = f"{run}-{i:05d}"
        return Ticket(
            id=f"T-{i:05d}",
            customer=f"customer-{i % 40}",
            text=f"Order {order} arrived broken, please refund it.",
            refund=RefundAsk(order=order, amount_eur=amount),
        )


@dataclass
class SupportChaosReport:
    """What the run sent, got back, did and counted."""

    run: str
    tickets: int
    seed: int
    sent: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    """Answered tickets by the resolution's status."""
    failed: Counter[str] = field(default_factory=Counter)
    """Tickets not answered, by the last error (``unfinished``: the load's deadline)."""
    re_asks: int = 0
    re_asked: int = 0
    """Tickets asked more than once."""
    approvals: int = 0
    """Refunds over the limit a person approved."""
    unanswered: list[str] = field(default_factory=list)
    """Workflows whose ticket got no answer."""
    workflows: list[str] = field(default_factory=list, repr=False)
    orders: list[str] = field(default_factory=list, repr=False)
    audit: Audit = field(default_factory=Audit)
    agent_kills: Counter[str] = field(default_factory=Counter)
    server_kills: Counter[str] = field(default_factory=Counter)
    processes: int = 0
    left_running: int = 0
    """Agent processes and servers of the run still alive after it (0: all stopped)."""
    unsettled: int = 0
    """Tasks still to deliver or to acknowledge when the fleet was stopped, after waiting
    for them (:meth:`loadtest.support_fleet.Fleet.settle`)."""
    seconds: float = 0.0
    load_seconds: float = 0.0
    settings: MeshSettings | None = field(default=None, repr=False)
    """The run's settings (its timeouts are the defaults)."""

    @property
    def completed(self) -> int:
        return sum(self.answered.values())

    def problems(self, config: SupportChaosConfig) -> list[str]:
        """Each target missed, in words (empty: all held)."""
        out = self.outcome_problems()
        if sum(self.agent_kills.values()) < config.agent_kills or any(
            self.server_kills[s] < config.server_kills for s in ("nats", "redis")
        ):
            out.append("fewer kills than asked")
        return out

    def outcome_problems(self) -> list[str]:
        """Each target about the tickets and their workflows missed, in words."""
        a, out = self.audit, []
        if self.completed != self.tickets or self.answered["refunded"] != self.tickets:
            out.append(f"{self.tickets - self.answered['refunded']} tickets not refunded")
        if a.paid != Counter({1: a.orders}) or a.paid_unexpected:
            out.append("an order not refunded exactly once")
        if any(n != 1 for n in a.desk_runs):
            out.append("the desk paid twice under one idempotency key")
        if any(n != 1 for runs in a.tool_runs.values() for n in runs):
            out.append("a tool ran more than once for one step")
        if a.dead_started:
            out.append(f"{sum(a.dead_started.values())} dead letters of started tasks")
        if self.failed:
            out.append(f"{sum(self.failed.values())} tickets unanswered")
        if a.stuck:
            gaps = len(set(a.stuck) - set(self.unanswered))
            out.append(
                f"{len(a.stuck)} workflows with a hop never finished ({gaps} of them answered)"
            )
        if self.unsettled:
            out.append(f"{self.unsettled} tasks still in flight when the agents were stopped")
        if a.unverified or a.forged or a.unreadable:
            out.append("events failing verification, forged or unreadable")
        if self.left_running:
            out.append(f"{self.left_running} processes left running")
        return out

    def format(self, config: SupportChaosConfig) -> str:
        settings = self.settings or MeshSettings()
        missed = self.problems(config)
        limit = f"{DEFAULT_REFUND_LIMIT_EUR:g} EUR"
        return "\n".join(
            [
                f"chaos-support: {self.tickets} refund tickets ({config.over_limit} over the "
                f"{limit} approval limit, approved by a person), {config.in_flight} in flight; "
                f"{len(support.ROLES)} roles and the tool gateway x {config.replicas} processes; "
                "default settings "
                f"(AckWait {settings.ack_wait_s:g} s, call timeout {settings.call_timeout_s:g} s, "
                f"max deliver {settings.max_deliver}); policy services/support/policy.toml; "
                f"seed {self.seed}; {os.cpu_count()} CPUs",
                *self.outcome_lines(),
                f"kills        agents {sum(self.agent_kills.values())} "
                f"({counts(self.agent_kills)}), nats-server {self.server_kills['nats']}, "
                f"redis-server {self.server_kills['redis']} (each restarted by jetmesh up); "
                f"{self.processes} agent processes started, {self.left_running} processes "
                "left running",
                *self.open_lines(),
                f"time         {self.seconds:.1f} s ({self.load_seconds:.1f} s of load)",
                "verdict      "
                + (
                    "OK: every ticket refunded exactly once, every tool run once per step, "
                    "0 dead letters of started tasks, 0 stuck, every event verified"
                    if not missed
                    else "MISSED: " + "; ".join(missed)
                ),
            ]
        )

    def outcome_lines(self) -> list[str]:
        """The report's lines on the tickets and what their workflows did."""
        a = self.audit
        tools = "; ".join(f"{tool}: steps run {once(c)}" for tool, c in sorted(a.tool_runs.items()))
        return [
            f"tickets      sent {self.sent}  completed {self.completed} "
            f"({counts(self.answered)})  failed {counts(self.failed)}  "
            f"re-asked {self.re_asks} times ({self.re_asked} tickets)  "
            f"approved by a person {self.approvals}",
            f"refunds      {a.orders} orders (the desk's payouts): paid {once(a.paid)}, "
            f"never {a.paid.get(0, 0)}; payouts for other orders {a.paid_unexpected}; "
            f"desk's runs per idempotency key: {once(a.desk_runs)}",
            f"tool runs    per gateway step (tool ok events): {tools or 'none'}",
            f"tool events  {counts(a.tool_outcomes)}",
            f"dead letters {sum(a.dead_letters.values())}: {counts(a.dead_letters, 'none')}; "
            f"of tasks that had started or finished: {sum(a.dead_started.values())}"
            + (f" ({counts(a.dead_started)})" if a.dead_started else ""),
            f"stuck        {len(a.stuck)} workflows, "
            f"{len(set(a.stuck) - set(self.unanswered))} of them answered "
            f"({a.open_hops} hops started or sent, "
            f"never finished); hops started more than once {a.redelivered}; "
            f"finished hops the tree shows running {a.shown_running}; "
            f"hops failed: {counts(a.failed_hops, 'none')}; tasks in flight when the "
            f"agents were stopped {self.unsettled}",
            f"events       {a.events} of {a.workflows} workflows read as the admin: "
            f"{a.unverified} failing verification, {a.forged} shown as forged, "
            f"{a.unreadable} logs unreadable",
        ]

    def open_lines(self) -> list[str]:
        """The first hops left open and steps a tool ran at twice, one line each."""
        return [
            *(
                f"  open       {line}"
                + (" [unanswered]" if line.split(":", 1)[0] in self.unanswered else "")
                for line in self.audit.stuck_detail[:10]
            ),
            *(f"  twice      {line}" for line in self.audit.twice_detail[:10]),
        ]


def counts(c: Counter[str] | Counter[int], zero: str = "0") -> str:
    """``key n, key n`` sorted by key, or ``zero``."""
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=str)) or zero


def once(c: Counter[int]) -> str:
    """A count of how many times each thing happened, as ``once N, twice or more M``."""
    more = sum(v for k, v in c.items() if k > 1)
    return f"once {c.get(1, 0)}, twice or more {more}"
