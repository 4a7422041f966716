"""``jetmesh demo``: the two reference meshes end to end on embedded servers, then their
event trees.

Starts nats-server and redis-server on free loopback ports under ``<state_dir>/demo``,
every role of the support and research meshes and the tool gateway as its own process
(certificates with each role's scopes; the gateway's tool credentials in a secrets
file), sends support tickets and a research question, plays the people who approve or
deny refunds over the limit (minting approvals bound to each refund), prints each
workflow's events as a tree with per-step latency, tokens and cost, and stops everything
it started.
"""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack

from services import research as research_mesh
from services import support as support_mesh
from services.support.systems import Desk
from services.toolgate import write_secrets

from ..embedded import NatsServer, RedisServer
from ..event_log import build_tree, read_settled, total_usage
from ..identity.keystore import KeyStore
from ..models.offline import MODEL
from ..processes import start_all
from ..runtime.runner import load_agent
from ..settings import MeshSettings
from ..subjects import Subjects
from .common import console, run_async, settings
from .demo_flows import Ran, handoffs, research, support
from .events import render
from .ingress import cli_client

ROLES = {
    **{role: f"services.support.{role}:agent" for role in support_mesh.ROLES},
    **{role: f"services.research.{role}:agent" for role in research_mesh.ROLES},
    "toolgate": support_mesh.TOOLGATE,
}
"""Every role of both meshes and the tool gateway, one process each."""


def demo() -> None:
    """Run both reference meshes on embedded servers and print their event trees."""
    base = settings()
    home = base.state_dir / "demo"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    began = time.perf_counter()
    with ExitStack() as stack:
        nats = stack.enter_context(NatsServer(data_dir=home / "nats"))
        redis = stack.enter_context(RedisServer(data_dir=home / "redis"))
        s = base.model_copy(
            update={
                "nats_url": nats.url,
                "redis_url": redis.url,
                "state_dir": home,
                "keys_dir": home / "keys",
                "model_provider": "offline",
                "tool_secrets_file": write_secrets(home / "secrets" / "tools.toml"),
            }
        )
        console.print(
            f"[bold]servers[/bold]  nats-server {nats.url} (JetStream)  redis-server {redis.url}"
        )
        keys = KeyStore(s.resolved_keys_dir)
        root = keys.init_root()
        scoped = []
        for name, target in ROLES.items():
            scopes = load_agent(target).scopes
            keys.issue(name, subjects=Subjects(s.subject_prefix), ttl_s=s.cert_ttl_s, scopes=scopes)
            scoped.append(f"{name} ({', '.join(scopes)})" if scopes else name)
        console.print(f"[bold]keys[/bold]     root {root.kid}; certificates: {', '.join(scoped)}")
        procs = start_all({n: [t] for n, t in ROLES.items()}, s, log_dir=home / "logs")
        for proc in procs.values():
            stack.callback(proc.stop)
        console.print(
            "[bold]agents[/bold]   "
            + ", ".join(f"{name} {proc.pid}" for name, proc in procs.items()),
            soft_wrap=True,
        )
        console.print(
            f"[bold]model[/bold]    {MODEL}: deterministic rules and templates, "
            "not a language model; $0"
        )
        run_async(_run(s))
    took = time.perf_counter() - began
    console.print(f"[bold]stopped[/bold]  agents drained, servers stopped ({took:.1f} s in all)")


async def _run(s: MeshSettings) -> None:
    ran = Ran()
    desk = Desk(s.redis_url)
    try:
        async with cli_client(s) as mesh:
            console.print(
                "\n[bold]support[/bold]  triage -> billing | technical | product | escalation"
            )
            await support(mesh, console, ran)
            await handoffs(desk, console)
            console.print(
                "\n[bold]research[/bold] orchestrator -> researcher x N, writer <-> reviewer"
            )
            await research(mesh, console, ran)
            await mesh.flush_events()
            console.print()
            for workflow, label in ran.workflows:
                roots = build_tree(await read_settled(mesh, workflow))
                console.print(f"[bold]{label}[/bold]")
                console.print(render(workflow, roots))
                console.print(f"total    {total_usage(roots)}\n")
    finally:
        await desk.aclose()
