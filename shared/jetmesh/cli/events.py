"""``jetmesh events <workflow>``: the workflow's events as a tree."""

from __future__ import annotations

import typer
from rich.tree import Tree

from ..event_log import TaskNode, build_tree, read_events, total_usage, usd
from .common import console, run_async, settings
from .ingress import admin_client

STATUS_STYLE = {
    "completed": "green",
    "accepted": "cyan",
    "failed": "red",
    "rejected": "red",
    "retrying": "yellow",
    "running": "yellow",
}


def node_label(node: TaskNode) -> str:
    """One line per hop: agent, type, status, time, signature, caller."""
    style = STATUS_STYLE.get(node.status, "white")
    took = f"{node.duration_ms:8.1f} ms" if node.duration_ms is not None else " " * 11
    signed = "[green]signed ok[/green]" if node.verified else "[red]SIGNATURE BAD[/red]"
    tries = f" x{node.attempts}" if node.attempts > 1 else ""
    notes = "; ".join([*node.notes, node.detail] if node.detail else node.notes)
    if node.usage.calls:
        notes = f"{node.usage}; {notes}" if notes else str(node.usage)
    extra = f"  [dim]{notes}[/dim]" if notes else ""
    what = node.type or "-"
    return (
        f"[bold]{node.agent:<10}[/bold] {what:<20} [{style}]{node.status + tries:<10}[/{style}]"
        f" {took}  {signed}  caller={node.caller or '-'}{extra}"
    )


def render(workflow: str, roots: list[TaskNode]) -> Tree:
    tree = Tree(f"workflow [bold]{workflow}[/bold]")

    def add(parent: Tree, node: TaskNode) -> None:
        branch = parent.add(node_label(node))
        for child in node.children:
            add(branch, child)

    for root in roots:
        add(tree, root)
    return tree


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
            console.print(f"no events for workflow {workflow}")
            raise typer.Exit(1)
        if raw:
            for item in logged:
                e = item.event
                ok = "ok" if item.verified else f"BAD ({item.problem})"
                used = (
                    f" {e.model} {e.tokens_in}+{e.tokens_out} tokens {usd(e.cost_usd)}"
                    if e.kind == "model" and e.body is not None
                    else ""
                )
                console.print(f"{e.at:.6f} {e.kind:<10} {e.agent:<10} {e.step:<28} sig={ok}{used}")
        else:
            roots = build_tree(logged)
            console.print(render(workflow, roots))
            usage = total_usage(roots)
            if usage.calls:
                console.print(f"models   {usage}")

    run_async(go())
