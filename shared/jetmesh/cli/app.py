"""``jetmesh``: run the embedded servers, agents and meshes, tasks, keys, events, replay,
signals and approvals."""

from __future__ import annotations

import typer

from . import (
    admin,
    agents,
    approve,
    cost,
    dlq,
    events,
    keys,
    launch,
    load,
    memory,
    policy,
    publish,
    replay,
    run,
    servers,
    signal,
    top,
)
from .help import flow_help

app = typer.Typer(
    name="jetmesh",
    help="An event-driven agent mesh over NATS JetStream, with signed messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("up")(servers.up)
app.command("down")(servers.down)
app.command("status")(servers.status)
app.command("run")(run.run)
app.command("launch")(launch.launch_command)
app.command("publish")(publish.publish)
app.command("events")(events.events)
app.command("agents")(agents.agents)
app.command("top")(top.top)
app.command("cost")(cost.cost)
app.command("memory")(memory.memory)
app.command("replay")(replay.replay)
app.command("signal")(signal.signal)
app.command("approve")(approve.approve)
app.command("deny")(approve.deny)
app.add_typer(keys.app, name="keys")
app.add_typer(dlq.app, name="dlq")
app.add_typer(policy.app, name="policy")
app.add_typer(admin.app, name="admin")
app.add_typer(load.app, name="load")
flow_help(app)  # after every registration: each paragraph of help flows in any width


def main() -> None:
    """The ``jetmesh`` command."""
    app()
