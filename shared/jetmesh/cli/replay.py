"""``jetmesh replay <workflow> [--rerun --agent module:attr ...]``: a workflow's recorded
history, and its tasks run again with the current code against it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import typer
from rich.text import Text
from rich.tree import Tree

from .._exceptions import ConfigError
from ..event_log import usd
from ..replay import DIVERGED, SAME, Payload, RerunReport, TaskHistory, WorkflowHistory
from ..replay import history as read_history
from ..replay import rerun as rerun_tasks
from ..runtime.agent import Agent
from ..runtime.runner import load_agent
from .common import console, err_console, run_async, settings
from .events import STATUS_STYLE
from .ingress import admin_client
from .render import markup, plain

WIDTH = 60
"""Characters of a body's JSON shown in the tree."""

OUTCOME_STYLE = {SAME: "green", DIVERGED: "red"}


def _payload(p: Payload | None, width: int) -> str:
    return markup(p.preview(width) if p is not None else "(not recorded)", limit=width + 40)


def _task_label(task: TaskHistory, width: int) -> str:
    """The task's line (agent, step, status, time, caller), then its input, each call with
    its reply, each side effect, and its result or failure."""
    node = task.node
    style = STATUS_STYLE.get(node.status, "white")
    took = f"  {node.duration_ms:.1f} ms" if node.duration_ms is not None else ""
    tries = f" x{node.attempts}" if node.attempts > 1 else ""
    lines = [
        f"[bold]{markup(node.agent)}[/bold]  {markup(node.step)}  "
        f"[{style}]{markup(node.status)}{tries}[/{style}]{took}  "
        f"caller={markup(node.caller or '-')}"
    ]
    if node.task is None:  # the ingress that accepted the workflow
        lines[0] += f"  {markup(node.detail)}"
        return "\n".join(lines)
    lines.append(f"  in     {_payload(task.input, width)}")
    for call in task.calls:
        took = f" {call.duration_ms:.1f} ms" if call.duration_ms is not None else ""
        error = (
            f" [red]error: {markup(call.reply.error)}[/red]"
            if call.reply and call.reply.error
            else ""
        )
        answer = (
            f"[red]none: {markup(call.unanswered)}[/red]"
            if call.reply is None and call.unanswered
            else _payload(call.reply, width)
        )
        lines.append(
            f"  call   {markup(call.step)} -> {markup(call.target)}: "
            f"{_payload(call.sent, width)}\n"
            f"         reply{took}:{error} {answer}"
        )
    for model in task.models:
        if model.reply is None:
            answer = f"[red]{markup(model.error)}[/red]"
        else:
            took = f", {model.duration_ms:.1f} ms" if model.duration_ms is not None else ""
            answer = (
                f"{model.tokens_in} tokens in, {model.tokens_out} out, {usd(model.cost_usd)}{took}"
            )
        lines.append(
            f"  model  {markup(model.step)} -> {markup(model.model or model.provider)}: {answer}"
        )
        if model.reply is not None:
            lines.append(f"         reply: {_payload(model.reply, width)}")
    for key, result in task.effects.items():
        lines.append(f"  effect {markup(key)}: {_payload(result, width)}")
    for name, signal in task.signals.items():
        lines.append(f"  signal {markup(name)}: {_payload(signal, width)}")
    for note in node.notes:
        lines.append(f"  [dim]event  {markup(note)}[/dim]")
    if node.status in ("failed", "rejected", "retrying"):
        lines.append(f"  [red]{markup(node.detail)}[/red]")
    elif task.result is not None:
        lines.append(f"  out    {_payload(task.result, width)}")
    return "\n".join(lines)


def render_history(recorded: WorkflowHistory, width: int = WIDTH) -> Tree:
    """The workflow as a tree of tasks, each with its input, calls, effects and result."""
    tree = Tree(Text.assemble("workflow ", (plain(recorded.workflow, limit=80), "bold")))

    def add(parent: Tree, task: TaskHistory) -> None:
        branch = parent.add(_task_label(task, width))
        for child in task.children:
            add(branch, child)

    for root in recorded.roots:
        add(tree, root)
    return tree


def render_report(report: RerunReport, width: int = WIDTH) -> list[str]:
    """One line per re-run task (same, diverged or skipped, and why), then each divergence
    with what the history expected and what the new code did (each cut to ``width``) and,
    for a body or a result, each field that changed."""
    shown = [(plain(t.step, limit=200), plain(t.agent, limit=40)) for t in report.tasks]
    steps = max((len(step) for step, _ in shown), default=0)
    agents = max((len(agent) for _, agent in shown), default=0)
    lines = []
    for task, (step, agent) in zip(report.tasks, shown, strict=True):
        style = OUTCOME_STYLE.get(task.status, "yellow")
        answered = [f"{task.calls} call(s)"] if task.calls else []
        answered += [f"{task.effects} effect(s)"] if task.effects else []
        answered += [f"{task.models} model call(s)"] if task.models else []
        notes = [" and ".join(answered) + " from the history"] if answered else []
        lines.append(
            f"{markup(f'{step:<{steps}}')}  [bold]{markup(f'{agent:<{agents}}')}[/bold]  "
            f"[{style}]{markup(f'{task.status:<8}')}[/{style}]  "
            f"[dim]{markup('; '.join(notes + task.notes))}[/dim]"
        )
        pad = " " * (steps + agents + 4)
        for d in task.divergences:
            lines.append(
                f"{pad}[red]{markup(d.what)}[/red] at {markup(d.step)}: {markup(d.detail)}"
            )
            if d.expected or d.got:
                lines.append(f"{pad}  expected {markup(_cut(d.expected, width)) or '-'}")
                lines.append(f"{pad}  got      {markup(_cut(d.got, width)) or '-'}")
            lines.extend(f"{pad}  changed  {markup(change)}" for change in d.changes)
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _json_payload(p: Payload | None) -> dict[str, Any] | None:
    if p is None:
        return None
    body = msgspec.json.decode(p.body) if p.body is not None else None
    return {"type": p.type, "body": body, "missing": p.missing, "error": p.error}


def history_json(recorded: WorkflowHistory) -> list[dict[str, Any]]:
    def one(task: TaskHistory) -> dict[str, Any]:
        node = task.node
        return {
            "task": node.task,
            "agent": node.agent,
            "step": node.step,
            "status": node.status,
            "detail": node.detail,
            "attempts": node.attempts,
            "duration_ms": node.duration_ms,
            "caller": node.caller,
            "input": _json_payload(task.input),
            "calls": [
                {
                    "step": c.step,
                    "target": c.target,
                    "sent": _json_payload(c.sent),
                    "reply": _json_payload(c.reply),
                    "unanswered": c.unanswered,
                    "duration_ms": c.duration_ms,
                }
                for c in task.calls
            ],
            "models": [
                {
                    "step": m.step,
                    "provider": m.provider,
                    "model": m.model,
                    "digest": m.digest,
                    "reply": _json_payload(m.reply),
                    "error": m.error,
                    "tokens_in": m.tokens_in,
                    "tokens_out": m.tokens_out,
                    "cost_usd": m.cost_usd,
                    "duration_ms": m.duration_ms,
                }
                for m in task.models
            ],
            "effects": {k: _json_payload(v) for k, v in task.effects.items()},
            "signals": {k: _json_payload(v) for k, v in task.signals.items()},
            "result": _json_payload(task.result),
            "children": [one(child) for child in task.children],
        }

    return [one(root) for root in recorded.roots]


def _load(targets: list[str]) -> list[Agent]:
    sys.path.insert(0, str(Path.cwd()))
    try:
        return [load_agent(t) for t in targets]
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {markup(exc)}", highlight=False)
        raise typer.Exit(2) from None


def replay(
    workflow: str = typer.Argument(..., help="workflow id (printed by publish and demo)"),
    rerun: bool = typer.Option(
        False, help="run the tasks of the --agent agents again against the history"
    ),
    agent: list[str] = typer.Option(
        [], help="module:attribute of an Agent whose current code re-runs (repeatable)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON (history, and report)"),
    width: int = typer.Option(WIDTH, help="characters of each body shown"),
) -> None:
    """Show a workflow's history: each task's input, calls and replies, side effects and
    result. With --rerun, run its tasks again with the current code of the --agent agents
    instead, answering calls and side effects from the history, and report where the new
    run diverges (exit 1 if it does)."""
    if rerun and not agent:
        err_console.print("[red]error:[/red] --rerun needs --agent module:attribute")
        raise typer.Exit(2)
    agents = _load(agent) if rerun else []

    async def go() -> tuple[WorkflowHistory, RerunReport | None]:
        async with admin_client(settings()) as mesh:
            recorded = await read_history(mesh, workflow)
            if not rerun or not recorded.roots:
                return recorded, None
            report = await rerun_tasks(recorded, agents, redis=mesh.redis, settings=mesh.settings)
            return recorded, report

    recorded, report = run_async(go())
    if not recorded.roots:
        console.print(f"no events for workflow {markup(workflow)}", highlight=False)
        raise typer.Exit(1)
    if as_json:
        out: dict[str, Any] = {"workflow": workflow, "tasks": history_json(recorded)}
        if report is not None:
            out["rerun"] = {"diverged": report.diverged, "tasks": msgspec.to_builtins(report.tasks)}
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    elif report is None:
        console.print(render_history(recorded, width))
    else:
        console.print(f"workflow [bold]{markup(workflow)}[/bold] re-run with the current code")
        console.print("\n".join(render_report(report, width)), highlight=False)
        counts = {s: sum(t.status == s for t in report.tasks) for s in (SAME, DIVERGED)}
        skipped = len(report.tasks) - sum(counts.values())
        console.print(
            f"re-run of {len(report.tasks)} task(s): {counts[SAME]} same, "
            f"{counts[DIVERGED]} diverged, {skipped} skipped"
        )
    if report is not None and report.diverged:
        raise typer.Exit(1)
