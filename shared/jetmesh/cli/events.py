"""``jetmesh events <workflow>``: the workflow's events as a tree.

Every string of an event is shown as data (:mod:`.render`): its writer may be any role.

A refusal names the message it refused by its ``Nats-Msg-Id`` (``message``) and its tasks
stream sequence (``seq``), shown as ``message=... seq=...``: on its hop in the tree, and as
a line of its own when it is about no task it could read (the workflow ``_unverified``)."""

from __future__ import annotations

from collections.abc import Sequence

import typer
from rich.text import Text
from rich.tree import Tree

from .. import events as ev
from ..dead_letters import DEAD_LETTER_FAILED
from ..event_log import LoggedEvent, TaskNode, build_tree, read_events, total_usage, usd
from .common import console, run_async, settings
from .ingress import admin_client
from .render import markup, plain, text

NAMING_A_MESSAGE = frozenset({ev.REJECTED, DEAD_LETTER_FAILED, ev.FAILED})
"""Kinds of event that may name a refused or given-up message by ``message`` and ``seq``."""

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
    named = list(dict.fromkeys(names(e) for e in node.events if e.verified and names(e)))
    if named:
        notes = "; ".join([*named, notes] if notes else named)
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


def names(item: LoggedEvent) -> str:
    """``message=<id> seq=<n>``: the message a refusal (or a give-up) names, by the
    ``Nats-Msg-Id`` its sender set and its tasks stream sequence; ``""`` for other events.
    The id is shown as data: its sender chose it."""
    e = item.event
    if e.kind not in NAMING_A_MESSAGE:
        return ""
    parts = [f"message={plain(e.message, limit=256)}"] if e.message else []
    if e.seq is not None:
        parts.append(f"seq={e.seq}")
    return " ".join(parts)


def loose_label(item: LoggedEvent) -> Text:
    """One line for an event about no task it could read (a message refused before its
    envelope could be trusted, a task given up on without its bytes): kind, who refused
    it, the reason, the message it names, signature, detail."""
    e = item.event
    signed = ("signed ok", "green") if item.verified else (f"BAD ({item.problem})", "red")
    label = Text.assemble(
        (f"{plain(e.agent, limit=40):<10}", "bold"),
        f" {plain(e.reason or '-', limit=60):<20} ",
        (f"{plain(e.kind, limit=20):<10}", STATUS_STYLE.get(e.kind, "red")),
        f" {names(item) or '-'}  ",
        signed,
    )
    if e.detail:
        label.append(f"  {plain(e.detail, limit=500)}", style="dim")
    return label


def split(logged: Sequence[LoggedEvent]) -> tuple[list[TaskNode], list[LoggedEvent]]:
    """``logged`` as the tree's roots and the refusals and give-ups about no task
    (``task`` null), which are lines of their own, not hops (nor ingress entries)."""
    refusals = [i for i in logged if i.event.task is None and i.event.kind in NAMING_A_MESSAGE]
    apart = {id(i) for i in refusals}
    return build_tree([i for i in logged if id(i) not in apart]), refusals


def streamed(node: TaskNode) -> int:
    """How many chunks the hop streamed (its own role's, each index once)."""
    return len({e.event.key for e in node.events if e.verified and e.event.kind == ev.CHUNK})


def _unverified(node: TaskNode) -> str:
    """FORGED when a signer wrote in another role's name or task, or a hop nobody called;
    SIGNATURE BAD when an event did not verify at all."""
    problems = [e.problem for e in node.events if not e.verified] + [node.detail]
    return "FORGED" if any(p.startswith("forged") for p in problems) else "SIGNATURE BAD"


def render(workflow: str, roots: list[TaskNode], refusals: Sequence[LoggedEvent] = ()) -> Tree:
    """A workflow's task tree as ``jetmesh events`` prints it, one branch a hop, then one
    branch for each of ``refusals`` (events about no task: :func:`split`)."""
    tree = Tree(Text.assemble("workflow ", (plain(workflow, limit=80), "bold")))

    def add(parent: Tree, node: TaskNode) -> None:
        branch = parent.add(node_label(node))
        for child in node.children:
            add(branch, child)

    for root in roots:
        add(tree, root)
    for item in refusals:
        tree.add(loose_label(item))
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
    named = f" {names(item)}" if names(item) else ""
    return text(
        f"{e.at:.6f} {plain(e.kind, limit=40):<10} {plain(who, limit=80):<10} "
        f"{plain(e.step, limit=200):<28} sig={ok}{used}{named}",
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
            roots, refusals = split(logged)
            console.print(render(workflow, roots, refusals))
            usage = total_usage(roots)
            if usage.calls:
                console.print(f"models   {usage}")

    run_async(go())
