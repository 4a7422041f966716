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
import contextlib
import os
import random
import time
from collections import Counter
from pathlib import Path

import uvloop

from jetmesh import CallFailed, MeshClient, MeshSettings
from jetmesh.cli import admin_client, cli_client, decide
from jetmesh.embedded import free_port, scratch_dir, wait_gone
from jetmesh.envelope import new_id
from jetmesh.event_log import read_events
from jetmesh.patterns import APPROVAL_REQUESTED, Verdict
from jetmesh.processes import interruptible
from jetmesh.toolgate import write_secrets
from loadtest.chaos_support_report import SupportChaosConfig as SupportChaosConfig
from loadtest.chaos_support_report import SupportChaosReport as SupportChaosReport
from loadtest.support_audit import audit_run
from loadtest.support_fleet import Fleet, Servers
from services import support
from services.support.settings import DEFAULT_REFUND_LIMIT_EUR
from services.support.wire import Resolution, Ticket

REPO_ROOT = Path(__file__).resolve().parents[1]
"""Agent processes start here, so that ``services`` imports."""
POLICY = support.POLICY
SCOPES = ["kb:read", "refund:write", "handoff:write"]
"""What the support portal's ingress grants a customer's token (as the demo)."""
TARGETS = {**{role: f"services.support.{role}:agent" for role in support.ROLES}}
TARGETS.update(support.PROCESSES)
KILLED = ("triage", "billing", "kb", "critic", "toolgate")
"""The roles whose processes are killed: those a refund ticket passes through."""


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
        report.unsettled = await fleet.settle()
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
    kept = contextlib.nullcontext(args.keep.resolve()) if args.keep else None
    with interruptible(), kept or scratch_dir("chaos-support-") as home:
        report = uvloop.run(run_chaos_support(config, home))
    print(report.format(config))
    if report.problems(config):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
