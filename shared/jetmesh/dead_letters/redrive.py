"""Sending a dead-lettered task back once its cause is fixed.

A dead letter is a claim. Its ``Mesh-Dlq-*`` headers and its bytes are whatever the
process that stored it wrote; what the stream vouches for is the subject it was stored on,
``<prefix>.dlq.<agent>``, which only that role (and the admin) may publish to on servers
that enforce the policy. So before anything is sent, :func:`verify_original` checks that
the dead letter holds the original task of that role:

- its bytes are a task envelope addressed to ``<agent>``;
- they verify with the kept signature headers, by a key whose certificate names the
  envelope's sender, who may publish to ``<agent>``'s task subject;
- its caller token and delegation chain verify now (they travel with the redriven task).
  A task without a chain verifies only when its sender is an ingress (an outside publisher
  that did not make one): the redriving ingress starts it.

Its age, staleness and replay are not checked: an old message is what a dead letter is. A
dead letter that fails any check is refused (:class:`~jetmesh.RedriveRefused`, a
``redrive-refused`` event in its workflow, or ``_unverified``) and nothing is sent.

A redriven task is a new message: the original's workflow, step, target, caller token, body
and chain, with a new id and creation time, signed by the ingress that redrives it (the
``cli``), its ``parent`` unchanged. The original bytes cannot be re-sent as they are:
receivers would refuse them as stale (and within the de-duplication window the stream
would drop them). The step's recorded result (a final error) is cleared first, so the
handler runs again; the dead letter is then removed and a ``redriven`` event written.

On servers that enforce the policy, the operator's admin connection reads and removes the
dead letter and clears the step's result; the ingress sends the task and writes the
events. It may send only to the roles its policy ``calls``: a dead letter of another role
is refused ``not-permitted`` before anything is sent.

Example:
    >>> letter = await get_dead_letter(admin, settings.dlq_stream, 42)  # doctest: +SKIP
    >>> task = await redrive(cli, letter, operator=admin)                  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis

from .. import events as ev
from .._exceptions import BadDelegation, NotATask, RedriveRefused, RejectedMessage
from ..bus.direct import MessageStore
from ..envelope import Envelope
from ..identity.certificates import Certificate
from ..identity.signing import KEY_HEADER
from ..identity.verifier import MSG_ID_HEADER
from ..ingress import Ingress, start_chain
from ..memory import keys
from ..mesh_protocols import Message
from ..settings import MeshSettings
from .publishing import audit_workflow
from .reading import DeadLetter

REDRIVEN = "redriven"
"""Event kind: a dead letter's task was sent again (``task`` is the new one)."""
REDRIVE_REFUSED = "redrive-refused"
"""Event kind: a dead letter that did not verify as its role's original task; nothing sent."""


class Operating(MessageStore, Protocol):
    """Who clears the step's result and removes the dead letter (the admin)."""

    @property
    def settings(self) -> MeshSettings: ...

    @property
    def redis(self) -> Redis: ...

    async def delete_msg(self, stream_name: str, seq: int) -> bool: ...


class Redriving(Ingress, Operating, Protocol):
    """The ingress that redrives: verifies, sends the task and writes the events (and
    operates, when no other operator is given)."""

    @property
    def certificate(self) -> Certificate:
        """Its own certificate (the roles it may send tasks to)."""
        ...


async def verify_original(
    ingress: Redriving, letter: DeadLetter
) -> tuple[Envelope, tuple[str, ...]]:
    """The dead letter's task, verified as the original of the role it is filed for, and
    the delegation chain to send it again with (see the module's docstring).

    Raises:
        NotATask: its bytes are not a task envelope.
        RedriveRefused: not a task of that role, or it does not verify (``reason`` says
            which check failed), or ``ingress`` may not send to that role.
    """
    original = letter.envelope()
    if original is None or original.kind != "task":
        if not letter.data:
            what = "it holds no bytes (its task is no longer in the tasks stream)"
        elif original is None:
            what = "its bytes are not an envelope"
        else:
            article = "an" if original.kind[:1] in ("a", "e", "i", "o", "u") else "a"
            what = f"it holds {article} {original.kind}"
        raise NotATask(letter.seq, f"{what}, not a task: there is nothing to send again")
    owner = letter.owner
    if not owner or original.to != owner:
        raise RedriveRefused(
            letter.seq,
            "misfiled",
            f"a task to {original.to!r} stored on {letter.stored_on!r}: a role's dead "
            "letters hold only tasks sent to it",
        )
    subject = ingress.subjects.task(owner)
    # Judged as if stored when created, under its own id: its age and replay do not count.
    headers = {**letter.headers, MSG_ID_HEADER: original.id}
    chain = original.chain
    try:
        await ingress.verify(Message(subject, letter.data, headers), stored_at=original.created)
    except BadDelegation as exc:
        if original.chain or not await _sent_by_ingress(ingress, letter):
            raise RedriveRefused(letter.seq, exc.reason, exc.detail) from None
        chain = await start_chain(
            ingress, original.caller, to=owner, workflow=original.workflow, step=original.step
        )
    except RejectedMessage as exc:
        raise RedriveRefused(letter.seq, exc.reason, exc.detail) from None
    if not ingress.certificate.may_publish(subject):
        raise RedriveRefused(
            letter.seq,
            "not-permitted",
            f"{ingress.name} may not send tasks to {owner} (not among the roles it calls)",
        )
    return original, chain


async def _sent_by_ingress(ingress: Redriving, letter: DeadLetter) -> bool:
    """Whether the key that signed the letter's task (already verified) is an ingress's."""
    try:
        cert = await ingress.certificate_of(letter.headers.get(KEY_HEADER, ""))
    except RejectedMessage:
        return False
    return cert.ingress


async def redrive(
    ingress: Redriving, letter: DeadLetter, *, operator: Operating | None = None
) -> Envelope:
    """Send ``letter``'s task again; returns the new task envelope.

    Args:
        ingress: verifies the dead letter, signs and sends the task, writes the events.
        operator: clears the step's result in Redis and removes the dead letter (the
            admin on servers that enforce the policy); ``ingress`` by default.

    Raises:
        RedriveRefused: the dead letter does not hold its role's original task, or the
            ingress may not send there (nothing sent, a ``redrive-refused`` event written).
    """
    original, chain = await verify_or_refuse(ingress, letter)
    return await send_again(ingress, letter, original, chain, operator=operator or ingress)


async def verify_or_refuse(
    ingress: Redriving, letter: DeadLetter
) -> tuple[Envelope, tuple[str, ...]]:
    """:func:`verify_original`, a refusal audited (a ``redrive-refused`` event) before it
    is raised.

    Raises:
        RedriveRefused: as :func:`verify_original`.
    """
    try:
        return await verify_original(ingress, letter)
    except RedriveRefused as exc:
        await _audit_refusal(ingress, letter, exc)
        raise


async def send_again(
    ingress: Redriving,
    letter: DeadLetter,
    original: Envelope,
    chain: tuple[str, ...],
    *,
    operator: Operating,
) -> Envelope:
    """Send ``letter``'s ``original`` task, already verified (:func:`verify_or_refuse`),
    again with ``chain``: its step's recorded result cleared, the dead letter removed, a
    ``redriven`` event written; returns the new task envelope."""
    task = ingress.envelope(
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
    if ingress.settings.step_ledger:
        step = keys.ledger_step(original.step, original.id)
        prefix = ingress.settings.subject_prefix
        await operator.redis.delete(
            keys.result(prefix, original.workflow, original.to, step),
            keys.result_events(prefix, original.workflow, original.to, step),
        )
    await ingress.send_task(task)
    await operator.delete_msg(operator.settings.dlq_stream, letter.seq)
    await ingress.emit(
        original.workflow,
        task_event(
            ingress,
            original,
            REDRIVEN,
            task=task.id,
            reason=letter.reason,
            detail=f"dead letter {letter.seq} ({letter.reason}) of task {original.id}",
        ),
        caller=original.caller,
        parent=task.id,
    )
    return task


def task_event(
    ingress: Redriving, original: Envelope, kind: str, *, task: str, reason: str, detail: str
) -> ev.Event:
    """An event of ``ingress``'s about a dead letter's ``original`` task (its step, role and
    type), naming ``task``."""
    return ev.Event(
        kind=kind,
        agent=ingress.name,
        at=time.time(),
        instance=ingress.instance,
        task=task,
        parent=original.parent,
        step=original.step,
        target=original.to,
        type=original.type,
        reason=reason,
        detail=detail[:1024],
    )


async def _audit_refusal(ingress: Redriving, letter: DeadLetter, exc: RedriveRefused) -> None:
    """The ``redrive-refused`` event (in the task's workflow when it has a readable one)."""
    envelope = letter.envelope()
    await ingress.emit(
        audit_workflow(ingress, envelope),
        ev.Event(
            kind=REDRIVE_REFUSED,
            agent=ingress.name,
            at=time.time(),
            instance=ingress.instance,
            task=envelope.id if envelope else None,
            step=envelope.step if envelope else "",
            target=letter.owner,
            reason=exc.reason,
            detail=f"dead letter {letter.seq} on {letter.stored_on}: {exc.detail}"[:1024],
        ),
        caller="",
    )
