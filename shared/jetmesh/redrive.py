"""Sending a dead-lettered task back once its cause is fixed.

A redriven task is a new message: the original's workflow, step, target, caller token and
body, with a new id and creation time, signed by whoever redrives it (an ingress such as
the CLI), its ``parent`` unchanged. The original bytes cannot be re-sent as they are: their
signature is still good, but receivers would refuse them as stale (and within the
de-duplication window the stream would drop them). The step's recorded result (a final
error) is cleared first, so the handler runs again; the dead letter is then removed and a
``redriven`` event written to the workflow.
"""

from __future__ import annotations

import time

from . import events as ev
from ._exceptions import ConfigError
from .client import MeshClient
from .dead_letters import DeadLetter
from .envelope import Envelope
from .ingress import start_chain
from .memory import keys

REDRIVEN = "redriven"


async def redrive(mesh: MeshClient, letter: DeadLetter) -> Envelope:
    """Send ``letter``'s task again; returns the new task envelope.

    Raises:
        ConfigError: the dead letter is not a readable task.
        InvalidToken, ExpiredToken: its caller token is no longer valid (nothing is sent).
    """
    original = letter.envelope()
    if original is None or original.kind != "task":
        raise ConfigError(f"dead letter {letter.seq} is not a readable task; it cannot be sent")
    # Refused for want of a chain: this ingress starts one (which verifies the token too).
    chain = original.chain or await start_chain(
        mesh, original.caller, to=original.to, workflow=original.workflow, step=original.step
    )
    await mesh.trust.caller(original.caller)
    task = mesh.envelope(
        kind="task",
        workflow=original.workflow,
        to=original.to,
        body=original.body,
        caller=original.caller,
        parent=original.parent,
        step=original.step,
        type_=original.type,
        chain=chain,
    )
    if mesh.settings.step_ledger:
        step = original.step or f"id:{original.id}"
        prefix = mesh.settings.subject_prefix
        await mesh.redis.delete(keys.result(prefix, original.workflow, original.to, step))
    await mesh.send_task(task)
    await mesh.js.delete_msg(mesh.settings.dlq_stream, letter.seq)
    await mesh.emit(
        original.workflow,
        ev.Event(
            kind=REDRIVEN,
            agent=mesh.name,
            at=time.time(),
            instance=mesh.instance,
            task=task.id,
            parent=original.parent,
            step=original.step,
            target=original.to,
            type=original.type,
            reason=letter.reason,
            detail=f"dead letter {letter.seq} ({letter.reason}) of task {original.id}",
        ),
        caller=original.caller,
        parent=task.id,
    )
    return task
