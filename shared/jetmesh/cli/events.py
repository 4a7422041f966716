"""``jetmesh events <workflow>``: the workflow's events as a tree.

Every string of an event is shown as data (:mod:`.render`): its writer may be any role."""

from __future__ import annotations

import typer
from rich.text import Text
from rich.tree import Tree

from .. import events as ev
from ..event_log import LoggedEvent, TaskNode, build_tree, read_events, total_usage, usd
from .common import console, run_async, settings
from .ingress import admin_client
from .render import markup, plain, text

STATUS_STYLE = {
    "completed": "green",
    "accepted": "cyan",
    "failed": "red",
    "rejected": "red",
    "retrying": "yellow",
    "running": "yellow",
}


def node_label(node: TaskNode) -> Text:
    """One line per hop: agent, type, status, time, signature, caller (all shown as data:
    see :mod:`.render`)."""
    style = STATUS_STYLE.get(node.status, "white")
    took = f"{node.duration_ms:8.1f} ms" if node.duration_ms is not None else " " * 11
    signed = ("signed ok", "green") if node.verified else (_unverified(node), "red")
    tries = f" x{node.attempts}" if node.attempts > 1 else ""
    notes = "; ".join([*node.notes, node.detail] if node.detail else node.notes)
    if chunks := streamed(node):
        said = f"streamed {chunks} chunk{'s' if chunks != 1 else ''}"
        notes = f"{said}; {notes}" if notes else said
    if node.usage.calls:
        notes = f"{node.usage}; {notes}" if notes else str(node.usage)
    label = Text.assemble(
        (f"{plain(node.agent, limit=40):<10}", "bold"),
        f" {plain(node.type or '-', limit=60):<20} ",
        (f"{plain(node.status, limit=20) + tries:<10}", style),
        f" {took}  ",
        signed,
        f"  caller={plain(node.caller or '-', limit=80)}",
    )
    if notes:
        label.append(f"  {plain(notes, limit=500)}", style="dim")
    return label


def streamed(node: TaskNode) -> int:
    """How many chunks the hop streamed (its own role's, each index once)."""
    return len({e.event.key for e in node.events if e.verified and e.event.kind == ev.CHUNK})


def _unverified(node: TaskNode) -> str:
    """FORGED when a signer wrote in another role's name or task, or a hop nobody called;
    SIGNATURE BAD when an event did not verify at all."""
    problems = [e.problem for e in node.events if not e.verified] + [node.detail]
    return "FORGED" if any(p.startswith("forged") for p in problems) else "SIGNATURE BAD"


def render(workflow: str, roots: list[TaskNode]) -> Tree:
    """A workflow's task tree as ``jetmesh events`` prints it, one branch a hop."""
    tree = Tree(Text.assemble("workflow ", (plain(workflow, limit=80), "bold")))

    def add(parent: Tree, node: TaskNode) -> None:
        branch = parent.add(node_label(node))
        for child in node.children:
            add(branch, child)

    for root in roots:
        add(tree, root)
    return tree


def raw_line(item: LoggedEvent) -> Text:
    """One event of ``jetmesh events --raw``: time, kind, who signed it (the agent it
    names, when that is someone else), step, signature, usage."""
    e = item.event
    who = item.signer if e.agent == item.signer else f"{item.signer} as {e.agent}"
    ok = "ok" if item.verified else f"BAD ({item.problem})"
    used = (
        f" {e.model} {e.tokens_in}+{e.tokens_out} tokens {usd(e.cost_usd)}"
        if e.kind == "model" and e.body is not None
        else ""
    )
    return text(
        f"{e.at:.6f} {plain(e.kind, limit=40):<10} {plain(who, limit=80):<10} "
        f"{plain(e.step, limit=200):<28} sig={ok}{used}",
        limit=1000,
    )


def events(
    workflow: str = typer.Argument(..., help="workflow id (printed by publish and demo)"),
    raw: bool = typer.Option(False, help="list every event instead of the tree"),
) -> None:
    """Print a workflow's events as a tree: which agent, what, how long, signature
    verified, on whose behalf."""

    async def go() -> None:
        async with admin_client(settings()) as mesh:
            logged = await read_events(mesh, workflow)
        if not logged:
            console.print(f"no events for workflow {markup(workflow)}", highlight=False)
            raise typer.Exit(1)
        if raw:
            for item in logged:
                console.print(raw_line(item), soft_wrap=True)
        else:
            roots = build_tree(logged)
            console.print(render(workflow, roots))
            usage = total_usage(roots)
            if usage.calls:
                console.print(f"models   {usage}")

    run_async(go())
