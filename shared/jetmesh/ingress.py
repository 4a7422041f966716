"""Starting workflows: what an ingress (a process whose certificate may mint caller
tokens) does before the first task leaves.

An ingress verifies the caller token, records an ``accepted`` event, and starts the
workflow's delegation chain with a link that binds the token to the workflow and its first
step (see :mod:`jetmesh.identity.delegation`). ``MeshClient.request`` and ``call`` do this
themselves; these functions serve loads and tools that send tasks without waiting for their
replies.

Example:
    >>> async def fire(mesh, token):                                 # doctest: +SKIP
    ...     await mesh.send_task(await ingress_task(mesh, "echo", Echo("hi"), token=token))
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from . import events as ev
from .envelope import Envelope, new_id
from .mesh_protocols import EventWriting, Sending, Verifying

__all__ = ["ChainStarting", "Ingress", "ingress_task", "record_accepted", "start_chain"]


class ChainStarting(Verifying, Protocol):
    """What starting a delegation chain takes: the caller token verified, and the first
    link signed by this identity."""

    def delegate(
        self,
        after: str,
        *,
        to: str,
        workflow: str,
        step: str,
        scopes: Iterable[str],
        expires: float,
    ) -> str: ...


class Ingress(ChainStarting, Sending, EventWriting, Protocol):
    """What an ingress does before the first task leaves: the chain, the task and the
    ``accepted`` event."""


async def start_chain(
    mesh: ChainStarting, token: str, *, to: str, workflow: str, step: str
) -> tuple[str, ...]:
    """The delegation chain of a workflow ``mesh`` starts: one link that binds ``token``
    (verified here) to ``workflow`` and hands its scopes, until its expiry, to ``to`` for
    ``step``.

    Raises:
        InvalidToken, ExpiredToken, RevokedKey: ``token`` does not verify.
    """
    caller = await mesh.verify_token(token)
    return (
        mesh.delegate(
            token, to=to, workflow=workflow, step=step, scopes=caller.scopes, expires=caller.expires
        ),
    )


async def ingress_task(
    mesh: Ingress,
    agent: str,
    body: Any,
    *,
    token: str,
    workflow: str | None = None,
    step: str | None = None,
) -> Envelope:
    """A task that starts a workflow at ``agent`` for the caller of ``token``, with its
    chain and no one waiting for the reply: for ``mesh.send_task`` (a load that only needs
    the task stored)."""
    workflow = workflow or new_id()
    step = step or agent
    chain = await start_chain(mesh, token, to=agent, workflow=workflow, step=step)
    return mesh.envelope(
        kind="task", workflow=workflow, to=agent, body=body, caller=token, step=step, chain=chain
    )


async def record_accepted(
    mesh: Ingress, workflow: str, agent: str, body: msgspec.Raw, *, type_: str, token: str
) -> None:
    """Verify ``token`` and write the workflow's ``accepted`` event (its root, with the
    task's body).

    Raises:
        InvalidToken, ExpiredToken, RevokedKey: ``token`` does not verify.
    """
    caller = await mesh.verify_token(token)
    event = ev.Event(
        kind=ev.ACCEPTED,
        agent=mesh.name,
        at=time.time(),
        instance=mesh.instance,
        target=agent,
        type=type_,
        step=agent,
        caller=caller.subject,
        body=ev.EventPayload(type=type_, value=body),
    )
    await mesh.emit(workflow, event, caller=token)
