"""What the gateway does on the mesh, as its ingress role: start a workflow for an HTTP
caller, find the workflows a caller started, read their events, and audit refusals.

A task is stored before it is acknowledged to the caller: the task is published and its
JetStream ack awaited, then the workflow's ``accepted`` event (with the task's id and the
body's digest) is stored the same way. With an ``Idempotency-Key`` the workflow id, the
task id and the ``accepted`` event's id derive from (gateway role, caller, key): the same
key again finds the ``accepted`` event in the signed log (a direct get, verified, signed
by this role, for this caller) and sends nothing; with another body it is a conflict.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec

from jetmesh import (
    BodyRejected,
    CallNotSent,
    Envelope,
    ErrorBody,
    MeshClient,
    MeshError,
    PublishFailed,
)
from jetmesh import events as ev
from jetmesh.bus import Stored, read_from
from jetmesh.envelope import decode_body, new_id
from jetmesh.event_log import LoggedEvent, verify_event
from jetmesh.ingress import start_chain
from jetmesh.runtime import preflight_for

from .auth import HttpCaller
from .limits import RateLimits
from .problems import Problem
from .settings import AUDIT_WORKFLOW, GatewaySettings

log = logging.getLogger("services.gateway")

REFUSED = "gateway.refused"
"""The kind of the event that audits a refused request (workflow ``_gateway``)."""
STORE_TIMEOUT_S = 10.0
ID_CONTEXT = b"jetmesh gateway idempotency ids/1"
MAX_TOKENS = 10_000
"""Caller tokens kept for reuse; the oldest goes first."""
_ENDS = frozenset({ev.COMPLETED, ev.FAILED, ev.REJECTED})


def idempotent_ids(secret: bytes, caller: str, key: str) -> tuple[str, str]:
    """The workflow id and task id of ``caller``'s request with idempotency ``key``: an
    HMAC under the gateway role's ``secret`` (:func:`id_secret`), so that no other role
    can predict a task's id and take its ``Nats-Msg-Id`` first."""
    h = hmac.new(secret, f"{caller}\0{key}".encode(), hashlib.sha256).digest()
    text = base64.b32encode(h).decode().rstrip("=")
    return "W" + text[:25], "T" + text[25:50]


def id_secret(mesh: MeshClient) -> bytes:
    """A secret only the holders of the gateway role's signing key derive (an Ed25519
    signature is deterministic): every replica of the role derives the same ids."""
    signature = mesh.identity.key.signing_key().sign(ID_CONTEXT).signature
    return hashlib.sha256(ID_CONTEXT + signature).digest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Started:
    """A workflow the gateway started (or had started, for the same idempotency key)."""

    workflow: str
    task: str
    agent: str
    again: bool = False
    """True: the same idempotency key again; nothing was sent."""
    outcome: dict[str, Any] | None = None
    """The root task's result or error, when it came within the wait."""


@dataclass(frozen=True)
class _Request:
    """A request to start a workflow, its body checked: what the task and its
    ``accepted`` event are made of."""

    caller: HttpCaller
    agent: str
    body: bytes
    type: str
    ids: tuple[str, str] | None = None
    """The workflow and task ids its idempotency key derives; None: new ones."""


def _json(raw: msgspec.Raw | bytes) -> Any:
    return msgspec.json.decode(bytes(raw))


def outcome_of(reply: Envelope) -> dict[str, Any]:
    """The body of a 200 answer: ``completed`` with the result, or ``failed`` with the
    agent's typed error."""
    if reply.kind == "error":
        error = decode_body(reply, ErrorBody)
        return {
            "status": "failed",
            "error": {"type": error.error_type, "message": error.message, "reason": error.reason},
        }
    return {"status": "completed", "result": _json(reply.body), "type": reply.type}


def event_json(seq: int, logged: LoggedEvent) -> dict[str, Any]:
    """One event as the HTTP API shows it."""
    e = logged.event
    out: dict[str, Any] = {
        "seq": seq,
        "kind": e.kind,
        "agent": logged.signer,
        "verified": logged.verified,
        "at": e.at,
        "task": e.task,
        "parent": e.parent,
        "step": e.step,
        "caller": logged.caller,
    }
    for name in ("target", "type", "reason", "detail", "key"):
        value = getattr(e, name)
        if value:
            out[name] = value
    if e.duration_ms is not None:
        out["duration_ms"] = e.duration_ms
    if e.attempt != 1:
        out["attempt"] = e.attempt
    if logged.problem:
        out["problem"] = logged.problem
    if e.body is not None and not e.body.omitted:
        out["body"] = _json(e.body.value)
    return out


class Door:
    """The gateway's work on the mesh, as its ingress ``mesh``."""

    def __init__(self, mesh: MeshClient, settings: GatewaySettings) -> None:
        self.mesh = mesh
        self.settings = settings
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        """Per idempotent workflow: one request at a time in this process, and how many
        requests hold or wait for it."""
        self._id_secret = id_secret(mesh)
        self._tokens: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = {}
        """Minted caller tokens by caller, with when they were minted (monotonic)."""
        self._anonymous_audits = RateLimits(rate_per_s=settings.rate_per_s, burst=settings.burst)
        self._throttled_audits = RateLimits(rate_per_s=1.0, burst=1)
        self.audits_skipped = 0
        """Refusals not audited (over the audit's rate)."""

    @property
    def _events_stream(self) -> str:
        return self.mesh.settings.events_stream

    def exposes(self, agent: str) -> bool:
        """Whether the gateway's certificate lets it send tasks to ``agent``."""
        try:
            subject = self.mesh.subjects.task(agent)
        except ValueError:
            return False
        return self.mesh.certificate.may_publish(subject)

    async def start(
        self,
        caller: HttpCaller,
        agent: str,
        body: bytes,
        *,
        type_: str,
        key: str | None,
        wait_s: float,
    ) -> Started:
        """Start a workflow at ``agent`` for ``caller`` with the JSON ``body``
        (canonical bytes), and wait up to ``wait_s`` for its result.

        Raises:
            Problem: ``body-rejected``, ``idempotency-conflict``, ``not-stored``.
        """
        type_ = await self._checked_type(agent, body, type_)
        if key is None:
            return await self._send(_Request(caller, agent, body, type_), wait_s)
        ids = idempotent_ids(self._id_secret, caller.key, key)
        workflow = ids[0]
        lock, users = self._locks.get(workflow, (asyncio.Lock(), 0))
        self._locks[workflow] = (lock, users + 1)
        try:
            async with lock:
                found = await self.accepted(workflow, caller)
                if found is None:
                    return await self._send(_Request(caller, agent, body, type_, ids), wait_s)
        finally:
            lock, users = self._locks[workflow]
            if users == 1:
                del self._locks[workflow]
            else:
                self._locks[workflow] = (lock, users - 1)
        e = found.event
        if e.digest != body_digest(body) or (e.target, e.type) != (agent, type_):
            raise Problem(
                "idempotency-conflict",
                f"idempotency key {key!r} started workflow {workflow} with another request",
                workflow=workflow,
            )
        task = e.task or ""
        outcome = await self._logged_outcome(workflow, task, agent, wait_s)
        return Started(workflow, task, agent, again=True, outcome=outcome)

    async def _checked_type(self, agent: str, body: bytes, type_: str) -> str:
        """The body's wire type (the agent's only input type when none is named), after
        the agent's published input schema accepted the body."""
        preflight = preflight_for(self.mesh)
        callee = await preflight.callee(agent)
        if not type_ and len(callee.schemas) == 1:
            type_ = next(iter(callee.schemas))
        refused = await preflight.check(agent, msgspec.Raw(body), type_)
        if isinstance(refused, BodyRejected):
            raise Problem("body-rejected", "; ".join(refused.errors) or str(refused))
        if isinstance(refused, CallNotSent):
            raise Problem("not-stored", str(refused))
        return type_

    async def _send(self, request: _Request, wait_s: float) -> Started:
        mesh = self.mesh
        agent = request.agent
        workflow, task_id = request.ids or (new_id(), None)
        token = self._token(request.caller)
        chain = await start_chain(mesh, token, to=agent, workflow=workflow, step=agent)
        task = mesh.envelope(
            kind="task",
            workflow=workflow,
            to=agent,
            body=msgspec.Raw(request.body),
            caller=token,
            step=agent,
            reply_to=mesh.reply_subject if wait_s > 0 else None,
            type_=request.type,
            chain=chain,
        )
        if task_id is not None:
            task = msgspec.structs.replace(task, id=task_id)
        replied = mesh.pending.expect(task) if wait_s > 0 else None
        try:
            try:
                async with asyncio.timeout(STORE_TIMEOUT_S):
                    if task_id is None:  # both stored before the answer, in one round trip
                        await asyncio.gather(
                            mesh.send_task(task), self._store_accepted(request, task, token)
                        )
                    else:  # the task first: a retry that finds no ``accepted`` sends it again
                        await mesh.send_task(task)
                        await self._store_accepted(request, task, token)
            except (TimeoutError, PublishFailed) as exc:
                raise Problem(
                    "not-stored", f"the mesh did not store the task: {exc}", workflow=workflow
                ) from None
            outcome = None
            if replied is not None:
                try:
                    reply = await asyncio.wait_for(asyncio.shield(replied), wait_s)
                except TimeoutError:
                    pass
                else:
                    outcome = outcome_of(reply)
        finally:
            if replied is not None:
                mesh.pending.forget(task.id)
        return Started(workflow, task.id, agent, outcome=outcome)

    def _token(self, caller: HttpCaller) -> str:
        """``caller``'s token: minted once, reused until half its lifetime is gone (each
        workflow is bound to it by its own first chain link, so the one token serves them
        all, and the mesh's cache of verified tokens skips verifying it again)."""
        key = (caller.tenant, caller.subject, caller.scopes)
        now = time.monotonic()
        cached = self._tokens.get(key)
        if cached is not None and now - cached[1] < self.settings.token_ttl_s / 2:
            return cached[0]
        token = self.mesh.mint_token(
            caller.subject,
            tenant=caller.tenant,
            scopes=caller.scopes,
            ttl_s=self.settings.token_ttl_s,
        )
        self._tokens[key] = (token, now)
        if len(self._tokens) > MAX_TOKENS:
            self._tokens.pop(next(iter(self._tokens)))
        return token

    async def _store_accepted(self, request: _Request, task: Envelope, token: str) -> None:
        """Store the workflow's ``accepted`` event: the task, its caller, the body and its
        digest (for an idempotent request its id derives from the task's: stored once)."""
        mesh = self.mesh
        event = ev.Event(
            kind=ev.ACCEPTED,
            agent=mesh.name,
            at=time.time(),
            instance=mesh.instance,
            task=task.id,
            target=task.to,
            type=task.type,
            step=task.step,
            caller=request.caller.subject,
            digest=body_digest(request.body),
            body=ev.EventPayload(type=task.type, value=msgspec.Raw(request.body)),
        )
        envelope = mesh.event_envelope(task.workflow, event, caller=token)
        if request.ids is not None:
            envelope = msgspec.structs.replace(envelope, id=task.id + "A")
        await mesh.store_sealed(mesh.subjects.event(task.workflow, ev.ACCEPTED), envelope)

    async def accepted(self, workflow: str, caller: HttpCaller) -> LoggedEvent | None:
        """The ``accepted`` event of ``workflow`` that this gateway role signed for
        ``caller`` (verified), or None: the workflow is unknown or someone else's."""
        try:
            subject = self.mesh.subjects.event(workflow, ev.ACCEPTED)
        except ValueError:
            return None
        async for stored in read_from(self.mesh, self._events_stream, subject):
            logged = await verify_event(self.mesh, stored)
            who = logged.identity
            if (
                logged.verified
                and logged.signer == self.mesh.name
                and who is not None
                and (who.tenant, who.subject) == (caller.tenant, caller.subject)
            ):
                return logged
        return None

    async def events(
        self, workflow: str, after: int = 0
    ) -> AsyncIterator[tuple[Stored, LoggedEvent]]:
        """The workflow's stored events after sequence ``after``, each verified."""
        subject = self.mesh.subjects.workflow_events(workflow)
        async for stored in read_from(self.mesh, self._events_stream, subject, after):
            yield stored, await verify_event(self.mesh, stored)

    async def _logged_outcome(
        self, workflow: str, task: str, agent: str, wait_s: float
    ) -> dict[str, Any] | None:
        """The root task's result as its agent logged it, looked for until ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            async for _, logged in self.events(workflow):
                if ends(logged, task, agent):
                    return logged_outcome(logged)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def audit(
        self,
        problem: Problem,
        where: str,
        caller: HttpCaller | None,
        agent: str | None = None,
    ) -> None:
        """Record a refused request as a signed ``gateway.refused`` event in workflow
        ``_gateway`` (``reason`` its code, ``detail`` the request and why, ``caller``
        the authenticated caller, if any). Refusals of unauthenticated requests are
        recorded up to the per-caller rate, as one caller, and a caller's ``rate-limited``
        refusals once a second; the rest are counted."""
        if (caller is None and self._anonymous_audits.take("(unauthenticated)") > 0) or (
            caller is not None
            and problem.reason == "rate-limited"
            and self._throttled_audits.take(caller.key) > 0
        ):
            self.audits_skipped += 1
            return
        event = ev.Event(
            kind=REFUSED,
            agent=self.mesh.name,
            at=time.time(),
            instance=self.mesh.instance,
            step="gateway",
            target=agent,
            caller=caller.key if caller is not None else "",
            reason=problem.reason,
            detail=f"{where} -> {problem.status}: {problem.detail}"[:1000],
            key=problem.workflow or "",
        )
        try:
            await self.mesh.emit(AUDIT_WORKFLOW, event, caller="")
        except MeshError as exc:  # the refusal is answered anyway
            log.warning("refusal not audited (%s): %s", problem.reason, exc)


def ends(logged: LoggedEvent, task: str, agent: str) -> bool:
    """Whether ``logged`` ends the workflow's root ``task`` at ``agent`` (its agent's
    verified ``completed`` or ``failed``, or its refusal)."""
    e = logged.event
    return logged.verified and e.kind in _ENDS and e.task == task and logged.signer == agent


def logged_outcome(logged: LoggedEvent) -> dict[str, Any]:
    e = logged.event
    if e.kind == ev.COMPLETED:
        result = None if e.body is None or e.body.omitted else _json(e.body.value)
        return {"status": "completed", "result": result, "type": e.body.type if e.body else ""}
    return {"status": "failed", "error": {"reason": e.reason, "message": e.detail}}
