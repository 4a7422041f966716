"""The support chaos run: refund tickets through the support mesh while agent processes,
nats-server and redis-server are SIGKILLed, with the default settings.

The servers start as ``jetmesh up`` starts them (the support mesh's policy
``services/support/policy.toml``: a NATS and a Redis user per role, then the admin step), in a
state directory of the run's own on free loopback ports. Every support role and the tool
gateway run as ``--replicas`` ``jetmesh run`` processes each, connected as their roles (the
gateway's tool credentials in a secrets file). The ``cli`` ingress sends ``--tickets``
refund tickets, ``--in-flight`` at a time, each for its own order under the approval limit,
and ``--over-limit`` of them over it, which a person approves (``jetmesh approve``'s code).
A ticket not answered within ``--request-timeout`` is asked again with the same workflow, as
a caller would, until ``--ticket-seconds``.

Meanwhile ``--agent-kills`` random agent processes of the roles a refund passes through
(triage, billing, kb, critic, toolgate: the others get no work) are SIGKILLed, each replaced
at once, and nats-server and redis-server ``--server-kills`` times each (each restarted
after a short pause by running ``jetmesh up`` again). Kills are spread over the load: kill
``k`` of ``n`` waits until ``k / (n + 1)`` of the tickets were sent, and the load waits for
the kills when it gets ahead.

Then it counts, from the outside (loadtest/support_audit.py): tickets answered, refunds per
order from the payment desk, the gateway's tool runs per step from each workflow's log,
dead letters by agent and reason, hops left open, events failing verification; every
process it started is stopped and checked gone.

    python -m loadtest.chaos_support [--tickets 300] [--in-flight 12] [--agent-kills 15]
                                     [--server-kills 2] [--seed N]

Bounded in count and time, loopback only. Exits 1 when a target is missed: every ticket
answered and its order refunded exactly once, every tool run once per step, no dead letter
of a task that had started or finished, no workflow stuck, every event verified, nothing
left running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from jetmesh import CallFailed, MeshClient, MeshSettings
from jetmesh.cli import admin_client, cli_client, decide
from jetmesh.embedded import free_port, wait_gone
from jetmesh.envelope import new_id
from jetmesh.event_log import read_events
from jetmesh.patterns import APPROVAL_REQUESTED, Verdict
from jetmesh.toolgate import write_secrets
from loadtest.support_audit import Audit, audit_run
from loadtest.support_fleet import Fleet, Servers
from services import support
from services.support.settings import DEFAULT_REFUND_LIMIT_EUR
from services.support.wire import RefundAsk, Resolution, Ticket

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Agent processes start here, so that ``services`` imports."""
POLICY = support.POLICY
SCOPES = ["kb:read", "refund:write", "handoff:write"]
"""What the support portal's ingress grants a customer's token (as the demo)."""
TARGETS = {**{role: f"services.support.{role}:agent" for role in support.ROLES}}
TARGETS.update(support.PROCESSES)
KILLED = ("triage", "billing", "kb", "critic", "toolgate")
"""The roles whose processes are killed: those a refund ticket passes through."""


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
            f"hops failed: {counts(a.failed_hops, 'none')}",
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


class TicketLoad:
    """The ingress side: sends the tickets, asks again, approves those over the limit."""

    def __init__(
        self, config: SupportChaosConfig, report: SupportChaosReport, kill_events: int
    ) -> None:
        self.config = config
        self.report = report
        self.kill_events = kill_events
        self.kills_done = 0
        self.next = 0
        self.progress = asyncio.Condition()

    async def advanced(self) -> None:
        async with self.progress:
            self.progress.notify_all()

    async def wait_kills(self, count: int) -> None:
        async with self.progress:
            self.progress.notify_all()
            await self.progress.wait_for(lambda: self.kills_done >= count)

    async def wait_sent(self, count: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.next >= count)

    async def run(self, client: MeshClient) -> None:
        await asyncio.gather(*(self._worker(client) for _ in range(self.config.in_flight)))

    async def _worker(self, client: MeshClient) -> None:
        c = self.config
        while self.next < c.tickets:
            i, self.next = self.next, self.next + 1
            await self.wait_kills(i * self.kill_events // c.tickets)
            await self.send(client, c.ticket(self.report.run, i))

    async def send(self, client: MeshClient, ticket: Ticket) -> None:
        """One ticket, asked again until answered or ``ticket_seconds`` passed; a ticket
        over the limit is approved once the workflow asks."""
        c, report = self.config, self.report
        assert ticket.refund is not None
        workflow = new_id()
        report.workflows.append(workflow)
        report.orders.append(ticket.refund.order)
        report.sent += 1
        token = client.mint_token(ticket.customer, tenant="chaos", scopes=SCOPES)
        over = ticket.refund.amount_eur > DEFAULT_REFUND_LIMIT_EUR
        approver = asyncio.create_task(self._approve(client, workflow)) if over else None
        give_up, asks = time.monotonic() + c.ticket_seconds, 0
        try:
            while True:
                asks += 1
                try:
                    got = await client.request(
                        "triage",
                        ticket,
                        token=token,
                        returns=Resolution,
                        workflow=workflow,
                        timeout=c.request_timeout_s,
                    )
                except CallFailed as exc:
                    report.failed[f"{exc.agent} {exc.reason or exc.error_type}"] += 1
                    report.unanswered.append(workflow)
                    return
                except Exception as exc:  # no answer (a timeout, a server away): ask again
                    if time.monotonic() > give_up:
                        report.failed[type(exc).__name__] += 1
                        report.unanswered.append(workflow)
                        return
                    await asyncio.sleep(0.5)
                    continue
                report.answered[got.status] += 1
                return
        finally:
            report.re_asks += asks - 1
            report.re_asked += asks > 1
            if approver is not None:
                approver.cancel()

    async def _approve(self, client: MeshClient, workflow: str) -> None:
        """Play the person: approve the refund once the workflow asks (again after errors)."""
        token = client.mint_token("chaos-approver", tenant="chaos", scopes=["refund:approve"])
        decided: set[str] = set()
        while True:
            await asyncio.sleep(0.2)
            try:
                logged = await read_events(client, workflow, timeout=5.0)
                for item in logged:
                    step = item.event.callee_step
                    if item.event.kind != APPROVAL_REQUESTED or step in decided:
                        continue
                    verdict = Verdict(approved=True, note="chaos run")
                    problem = await decide(client, workflow, step, verdict, token)
                    if not problem or "already" in problem:
                        decided.add(step)
                        self.report.approvals += not problem
            except Exception:  # a server away: try again
                await asyncio.sleep(0.5)


async def _chaos(
    config: SupportChaosConfig,
    fleet: Fleet,
    servers: Servers,
    load: TicketLoad,
    rng: random.Random,
) -> None:
    """The kills, each once its share of the load was sent; each server restarted by
    ``jetmesh up`` after a pause, each agent process replaced at once."""
    kinds = ["agent"] * config.agent_kills + ["nats", "redis"] * config.server_kills
    rng.shuffle(kinds)
    for k, kind in enumerate(kinds, start=1):
        await load.wait_sent(k * config.tickets // (len(kinds) + 1))
        await asyncio.sleep(rng.uniform(*config.pause_s))
        if kind == "agent":
            role = await fleet.kill_one(rng, KILLED)
            load.report.agent_kills[role] += 1
        else:
            await servers.kill(kind)
            load.report.server_kills[kind] += 1
            await asyncio.sleep(rng.uniform(*config.down_s))
            await servers.up()
        load.kills_done += 1
        await load.advanced()


def run_settings(home: Path) -> MeshSettings:
    """The default settings, on the run's own servers and state directory, with the
    support policy, the offline model and a secrets file for the gateway's tools."""
    home.mkdir(parents=True, exist_ok=True)
    return MeshSettings().model_copy(
        update={
            "nats_url": f"nats://127.0.0.1:{free_port()}",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "state_dir": home,
            "keys_dir": home / "keys",
            "policy_file": POLICY,
            "model_provider": "offline",
            "tool_secrets_file": write_secrets(
                home / "secrets" / "tools.toml", support.TOOL_CREDENTIALS
            ),
        }
    )


async def _drive(
    config: SupportChaosConfig,
    settings: MeshSettings,
    fleet: Fleet,
    servers: Servers,
    report: SupportChaosReport,
) -> None:
    kill_events = config.agent_kills + 2 * config.server_kills
    load = TicketLoad(config, report, kill_events)
    async with cli_client(settings) as client:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(config.max_seconds), asyncio.TaskGroup() as group:
                group.create_task(load.run(client))
                group.create_task(_chaos(config, fleet, servers, load, random.Random(report.seed)))
        except TimeoutError:
            answered = report.completed + sum(report.failed.values())
            report.failed["unfinished"] += report.sent - answered
        report.load_seconds = time.perf_counter() - started


async def run_chaos_support(
    config: SupportChaosConfig, home: Path, *, run: str | None = None
) -> SupportChaosReport:
    """Run the scenario with its own servers and state under ``home`` (see the module's
    docstring). Every process started is stopped before this returns, also when it raises.

    Returns:
        The report; ``report.problems(config)`` lists the targets missed.
    """
    began = time.perf_counter()
    seed = config.seed if config.seed is not None else random.randrange(2**32)
    report = SupportChaosReport(
        run=run or f"CS{seed % 100000:05d}", tickets=config.tickets, seed=seed
    )
    settings = await asyncio.to_thread(run_settings, home)
    report.settings = settings
    servers = Servers(settings, home / "logs")
    fleet = Fleet(settings, TARGETS, config.replicas, home / "logs")
    try:
        await servers.up()
        await fleet.start_all()
        await _drive(config, settings, fleet, servers, report)
        await asyncio.to_thread(fleet.stop)  # drained before counting
        async with admin_client(settings) as admin:
            report.audit = await audit_run(admin, settings, report.workflows, report.orders)
    finally:
        await asyncio.to_thread(fleet.stop)
        await asyncio.to_thread(servers.down)
        report.agent_kills = Counter(fleet.kills)
        report.server_kills = Counter(servers.kills)
        report.processes = len(fleet.started)
        agents = [p.pid for p in fleet.running if p.pid is not None]
        left = await asyncio.to_thread(wait_gone, agents + list(servers.pids))
        report.left_running = len(left)
        report.seconds = time.perf_counter() - began
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.chaos_support",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=12)
    parser.add_argument("--agent-kills", type=int, default=15)
    parser.add_argument("--server-kills", type=int, default=2, help="of each server")
    parser.add_argument("--over-limit", type=int, default=5, help="tickets a person approves")
    parser.add_argument("--replicas", type=int, default=2, help="processes per role")
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="deadline of the load")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep state and logs here")
    args = parser.parse_args(argv)
    config = SupportChaosConfig(
        tickets=args.tickets,
        in_flight=args.in_flight,
        agent_kills=args.agent_kills,
        server_kills=args.server_kills,
        over_limit=args.over_limit,
        replicas=args.replicas,
        request_timeout_s=args.request_timeout,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    os.chdir(REPO_ROOT)
    home = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="chaos-support-"))
    try:
        report = uvloop.run(run_chaos_support(config, home))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)
    print(report.format(config))
    if report.problems(config):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
