"""The demo: the two reference meshes end to end on servers that enforce their policy,
then their event trees (``python -m services.demo``, ``make demo``).

Starts nats-server and redis-server on free loopback ports under ``<state_dir>/demo`` as
``jetmesh up`` does (:func:`jetmesh.cli.servers.up_servers`): every role of the demo's
policy (:data:`services.demo.POLICY`: the support and the research meshes' files over the
library's roles) a NATS user and, for agents, a Redis user, generated into the demo's keys
directory; then the admin step (streams, consumers, registry, each role's certificate from
the policy). Shows that a client without credentials is refused by both servers, starts
every role of the support and research meshes and the tool gateway as its own process,
each connected as its role (the gateway's tool credentials in a secrets file), sends
support tickets and a research question as the ``cli`` ingress, plays the people who
approve or deny refunds over the limit (minting approvals bound to each refund), reads
the people's queue as the admin, prints each workflow's events as a tree with per-step
latency, tokens and cost, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from contextlib import ExitStack

from jetmesh import MeshSettings
from jetmesh.cli import (
    CLI_IDENTITY,
    MeshPackage,
    agents_table,
    cli_client,
    console,
    run_async,
    settings,
    up_servers,
)
from jetmesh.cli import render_workflow as render
from jetmesh.embedded import EmbeddedStack, Endpoint, free_port
from jetmesh.event_log import build_tree, read_settled, total_usage
from jetmesh.logins import admin_login
from jetmesh.memory.connection import connect as connect_redis
from jetmesh.models import OFFLINE_MODEL as MODEL
from jetmesh.policy import Policy, load_policy
from jetmesh.processes import start_all
from jetmesh.toolgate import write_secrets
from services.demo import MESHES, POLICY
from services.demo.flows import Ran, handoffs, research, support
from services.support.systems import Desk

PACKAGES = [MeshPackage.of(name) for name in MESHES]
"""The meshes the demo runs."""

ROLES = {name: target for mesh in PACKAGES for name, target in mesh.targets.items()}
"""Every role of both meshes and the tool gateway, one process each."""

TOOL_CREDENTIALS = [tool for mesh in PACKAGES for tool in mesh.tool_credentials]
"""The tools whose stand-in credentials the gateway gets."""

ANSWER_TIMEOUT_S = 2.0
"""How long a server may take to refuse a client without credentials."""


def demo() -> None:
    """Run both reference meshes on servers that enforce their policy and print their
    event trees."""
    base = settings()
    home = base.state_dir / "demo"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    began = time.perf_counter()
    s = base.model_copy(
        update={
            "nats_url": f"nats://127.0.0.1:{free_port()}",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "state_dir": home,
            "keys_dir": home / "keys",
            "policy_file": POLICY,
            "model_provider": "offline",
            "tool_secrets_file": write_secrets(home / "secrets" / "tools.toml", TOOL_CREDENTIALS),
        }
    )
    policy = load_policy(POLICY)
    with ExitStack() as stack:
        stack.callback(EmbeddedStack(s).down)
        done = up_servers(s, policy)
        assert done.provisioned is not None
        console.print(
            f"[bold]servers[/bold]  nats-server {s.nats_url} (JetStream)  "
            f"redis-server {s.redis_url}",
            soft_wrap=True,
        )
        console.print(
            f"[bold]policy[/bold]   {' + '.join(MESHES)}: {len(policy.roles)} roles, each a NATS "
            f"user (nkey) and, for agents, a Redis user ({s.resolved_keys_dir})",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            f"[bold]admin[/bold]    streams, {len(done.provisioned.consumers)} consumers, "
            f"registry; certificates from the policy: {_certificates(policy)}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"[bold]refused[/bold]  {run_async(_anonymous(s))}", soft_wrap=True)
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


def _certificates(policy: Policy) -> str:
    """Each role with what its certificate grants beyond its subjects."""
    names = [CLI_IDENTITY, *ROLES]
    described = []
    for name in names:
        grant = policy.roles[name]
        extra = ["ingress"] if grant.ingress else []
        extra += sorted(grant.scopes)
        described.append(f"{name} ({', '.join(extra)})" if extra else name)
    return ", ".join(described)


async def _answer(url: str, greeting: bool, send: bytes) -> str:
    """The first line a server at ``url`` answers ``send`` with (after its greeting)."""
    endpoint = Endpoint.parse(url, default_port=0)
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        if greeting:
            await reader.readline()  # nats-server's INFO
        writer.write(send)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
        return line.decode(errors="replace").strip()
    finally:
        writer.close()
        await writer.wait_closed()


async def _anonymous(s: MeshSettings) -> str:
    """What each server answers a client that connects without credentials."""
    said_nats = await _answer(s.nats_url, True, b'CONNECT {"verbose":false}\r\nPING\r\n')
    said_redis = await _answer(s.redis_url, False, b"PING\r\n")
    return f"a client without credentials: nats-server {said_nats}, redis-server {said_redis}"


async def _redis_users(s: MeshSettings) -> str:
    """Who the Redis connections are, counted by user (``default`` is the admin)."""
    admin = connect_redis(s.redis_url, retry_s=1.0, **admin_login(s).redis_options())
    try:
        clients = await admin.client_list()
    finally:
        await admin.aclose()
    users = Counter(str(client.get("user", "?")) for client in clients)
    return ", ".join(f"{user} {count}" for user, count in sorted(users.items()))


async def _run(s: MeshSettings) -> None:
    ran = Ran()
    people = Desk(s.redis_url, settings=s, login=admin_login(s))
    try:
        async with cli_client(s) as mesh:
            console.print(
                f"cli      connected as {mesh.login.user} (an ingress: mints caller tokens)"
            )
            console.print(
                "\n[bold]support[/bold]  triage -> billing | technical | product | escalation"
            )
            await support(mesh, console, ran)
            await handoffs(people, console)
            console.print(
                "\n[bold]research[/bold] orchestrator -> researcher x N, writer <-> reviewer"
            )
            await research(mesh, console, ran)
            await mesh.flush_events()
            console.print(
                "\n[bold]live[/bold]     the replicas answering the NATS service API, as "
                "`jetmesh agents` shows them:"
            )
            console.print(await agents_table(s))
            console.print(
                f"\n[bold]redis[/bold]    connections by user: {await _redis_users(s)} "
                "(default: the admin, counting these and reading the people's queue)",
                highlight=False,
                soft_wrap=True,
            )
            console.print()
            for workflow, label in ran.workflows:
                roots = build_tree(await read_settled(mesh, workflow))
                console.print(f"[bold]{label}[/bold]")
                console.print(render(workflow, roots))
                console.print(f"total    {total_usage(roots)}\n")
    finally:
        await people.aclose()
