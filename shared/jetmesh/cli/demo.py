"""``jetmesh demo``: the helpdesk mesh end to end on embedded servers, then its event trees.

Starts nats-server and redis-server on free loopback ports under ``<state_dir>/demo``,
the four helpdesk agents as separate processes, sends tickets as caller ``alice``, prints
each workflow's events as a tree, and stops everything it started.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack

from services.helpdesk.triage import Route
from subjects.helpdesk import Answer, Ticket

from ..embedded import NatsServer, RedisServer
from ..envelope import new_id
from ..event_log import build_tree, read_settled
from ..identity.keystore import KeyStore
from ..memory import WorkingMemory
from ..processes import AgentProcess
from ..settings import MeshSettings
from ..subjects import Subjects
from .common import console, run_async, settings
from .events import render
from .ingress import cli_client

AGENTS = {
    "triage": ([], "services.helpdesk.triage:agent"),
    "billing": ([], "services.helpdesk.billing:agent"),
    "technical": ([], "services.helpdesk.technical:agent"),
    "kb": (["kb:read"], "services.helpdesk.kb:agent"),
}

TICKETS = [
    Ticket("T-1001", "alice", "I was charged twice for my subscription, please refund"),
    Ticket("T-1002", "alice", "The app crashes when I open settings"),
    Ticket("T-1003", "alice", "Where can I download my invoice?"),
]


def demo() -> None:
    """Run the helpdesk demo mesh on embedded servers and print its event trees."""
    base = settings()
    home = base.state_dir / "demo"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with ExitStack() as stack:
        nats = stack.enter_context(NatsServer(data_dir=home / "nats"))
        redis = stack.enter_context(RedisServer(data_dir=home / "redis"))
        s = base.model_copy(
            update={
                "nats_url": nats.url,
                "redis_url": redis.url,
                "state_dir": home,
                "keys_dir": home / "keys",
            }
        )
        console.print(
            f"[bold]servers[/bold]  nats-server {nats.url} (JetStream)  redis-server {redis.url}"
        )
        keys = KeyStore(s.resolved_keys_dir)
        root = keys.init_root()
        for name, (scopes, _) in AGENTS.items():
            keys.issue(name, subjects=Subjects(s.subject_prefix), ttl_s=s.cert_ttl_s, scopes=scopes)
        console.print(
            f"[bold]keys[/bold]     root {root.kid}, certificates for {', '.join(AGENTS)}"
        )
        for name, (_, target) in AGENTS.items():
            proc = AgentProcess([target], s, log_file=home / "logs" / f"{name}.log").start()
            stack.callback(proc.stop)
            console.print(f"[bold]agent[/bold]    {name:<10} pid {proc.pid}")
        run_async(_send(s))
    console.print("[bold]stopped[/bold]  agents drained, servers stopped")


async def _send(s: MeshSettings) -> None:
    async with cli_client(s) as mesh:
        token = mesh.mint_token("alice", tenant="acme", scopes=["kb:read"])
        console.print("[bold]caller[/bold]   alice@acme, token minted by the cli ingress\n")
        workflows: list[str] = []
        for ticket in TICKETS:
            started = time.perf_counter()
            workflow = new_id()
            answer = await mesh.request(
                "triage", ticket, token=token, returns=Answer, workflow=workflow
            )
            took = (time.perf_counter() - started) * 1000
            console.print(
                f"{ticket.id} -> [bold]{answer.team}[/bold] in {took:.1f} ms: {answer.text[:90]}"
            )
            workflows.append(workflow)
        await mesh.flush_events()
        for workflow in workflows:
            route = await WorkingMemory(mesh.redis, s.subject_prefix, workflow, "triage").get(
                "route", Route
            )
            console.print(f"memory   {workflow} triage/route = {route}")
        console.print()
        for workflow in workflows:
            console.print(render(workflow, build_tree(await read_settled(mesh, workflow))))
