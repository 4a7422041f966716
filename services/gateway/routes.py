"""The HTTP routes: start a task, read a workflow, follow its events, health.

Each route finds its :class:`~services.gateway.gateway.Gateway` in ``app.state.gateway``;
every refusal is raised as a :class:`~services.gateway.problems.Problem`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from .auth import HttpCaller
from .door import event_json
from .gateway import Gateway
from .problems import AUTH_REASONS, Problem, responses
from .streams import event_stream

_encoder = msgspec.json.Encoder(order="sorted")
MAX_IDEMPOTENCY_KEY = 255

router = APIRouter()
bearer = HTTPBearer(auto_error=False, bearerFormat="API key or JWT")


class TaskAccepted(BaseModel):
    """The task is stored; follow the workflow at ``Location``."""

    workflow: str
    task: str
    status: str = Field(description="`accepted`")


class TaskFinished(BaseModel):
    """The root task finished within the wait."""

    workflow: str
    task: str
    status: str = Field(description="`completed` or `failed`")
    result: Any = Field(default=None, description="the agent's reply (completed)")
    type: str | None = Field(default=None, description="the reply's wire type")
    error: dict[str, str] | None = Field(
        default=None, description="the agent's typed error: type, message, reason (failed)"
    )


class WorkflowEvents(BaseModel):
    """A workflow's verified events, in stream order."""

    workflow: str
    agent: str
    task: str
    events: list[dict[str, Any]]


class Health(BaseModel):
    status: str


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def caller_of(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> HttpCaller:
    """The authenticated caller, within its rate."""
    gateway = gateway_of(request)
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    caller = await gateway.auth.caller(header)
    request.state.caller = caller
    wait = gateway.limits.take(caller.key)
    if wait > 0:
        raise Problem(
            "rate-limited",
            f"over {gateway.settings.rate_per_s:g} requests/s for {caller.key}",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return caller


Caller = Annotated[HttpCaller, Depends(caller_of)]


def prefer_wait(prefer: str | None, query: float | None, limit: float) -> float:
    """The seconds to wait for a result: ``?wait=`` or ``Prefer: wait=<s>`` (RFC 7240),
    at most ``limit``; 0 with ``respond-async`` or neither.

    Raises:
        Problem: ``bad-request``, a ``wait`` that is not a number.
    """
    wait = query
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name == "respond-async":
            return 0.0
        if name == "wait" and wait is None:
            try:
                wait = float(value.strip().split(";")[0])
            except ValueError:
                raise Problem("bad-request", f"Prefer: wait={value!r} is not a number") from None
    if wait is None or not math.isfinite(wait) or wait <= 0:
        return 0.0
    return min(wait, limit)


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem("body-too-large", f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _canonical(data: bytes) -> bytes:
    """The body's JSON re-encoded with sorted keys, so that the same JSON has one
    digest (idempotency)."""
    try:
        return _encoder.encode(msgspec.json.decode(data))
    except msgspec.DecodeError as exc:
        raise Problem("body-not-json", f"the body is not JSON: {exc}") from None


@router.post(
    "/v1/agents/{agent}/tasks",
    status_code=202,
    response_model=TaskAccepted,
    responses={
        200: {"model": TaskFinished, "description": "finished within the wait"},
        **responses(
            *AUTH_REASONS,
            "unknown-agent",
            "bad-request",
            "body-not-json",
            "body-too-large",
            "body-rejected",
            "idempotency-conflict",
            "not-stored",
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"description": "the task body"}}},
        }
    },
    summary="Start a workflow at an agent",
)
async def post_task(
    request: Request,
    agent: str,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
    wait: Annotated[float | None, Query(ge=0, description="seconds to wait")] = None,
    type: Annotated[str, Query(max_length=256, description="the body's wire type")] = "",
) -> JSONResponse:
    """Send the JSON body to ``agent`` as the caller's task: 202 once it is stored, 200
    with the result if it comes within the wait (``Prefer: wait=<s>`` or ``?wait=``)."""
    gateway = gateway_of(request)
    request.state.agent = agent
    if not gateway.door.exposes(agent):
        raise Problem("unknown-agent", f"the gateway does not expose {agent!r}")
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY and idempotency_key.isprintable()
    ):
        raise Problem("bad-request", "Idempotency-Key: 1-255 printable characters")
    seconds = prefer_wait(prefer, wait, gateway.settings.max_wait_s)
    limit = gateway.mesh_settings.max_payload_bytes // 2
    body = _canonical(await _read_body(request, limit))
    started = await gateway.door.start(
        caller, agent, body, type_=type, key=idempotency_key, wait_s=seconds
    )
    gateway.webhooks.started(caller, started)
    headers = {"Location": f"/v1/workflows/{started.workflow}"}
    if started.again:
        headers["Idempotent-Replayed"] = "true"
    if seconds:
        headers["Preference-Applied"] = f"wait={seconds:g}"
    ids = {"workflow": started.workflow, "task": started.task}
    if started.outcome is not None:
        return JSONResponse(ids | started.outcome, status_code=200, headers=headers)
    return JSONResponse(ids | {"status": "accepted"}, status_code=202, headers=headers)


async def _owned(gateway: Gateway, workflow: str, caller: HttpCaller) -> tuple[str, str]:
    """The agent and root task of ``workflow``, if ``caller`` started it here."""
    found = await gateway.door.accepted(workflow, caller)
    if found is None:
        raise Problem("unknown-workflow", f"no workflow {workflow!r} of this caller")
    return found.event.target or "", found.event.task or ""


@router.get(
    "/v1/workflows/{workflow}",
    response_model=WorkflowEvents,
    responses=responses(*AUTH_REASONS, "unknown-workflow"),
    summary="A workflow's events",
)
async def get_workflow(request: Request, workflow: str, caller: Caller) -> WorkflowEvents:
    """The workflow's verified events; only the caller who started it may read it."""
    gateway = gateway_of(request)
    agent, task = await _owned(gateway, workflow, caller)
    events = [event_json(s.seq, e) async for s, e in gateway.door.events(workflow)]
    return WorkflowEvents(workflow=workflow, agent=agent, task=task, events=events)


@router.get(
    "/v1/workflows/{workflow}/events",
    responses={
        200: {"description": "text/event-stream", "content": {"text/event-stream": {}}},
        **responses(*AUTH_REASONS, "unknown-workflow", "bad-request"),
    },
    summary="A workflow's events as Server-Sent Events",
)
async def get_events(
    request: Request,
    workflow: str,
    caller: Caller,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Each event as it is stored (``id`` its stream sequence; resume with
    ``Last-Event-ID``), until the root task completes or fails."""
    gateway = gateway_of(request)
    agent, task = await _owned(gateway, workflow, caller)
    after = 0
    if last_event_id:
        if not last_event_id.isdigit():
            raise Problem("bad-request", "Last-Event-ID must be an event's sequence")
        after = int(last_event_id)
    s = gateway.settings
    return EventSourceResponse(
        event_stream(gateway.door, workflow, task, agent, after, poll_max_s=s.poll_max_s),
        ping=s.heartbeat_s,
    )


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses=responses("not-ready"),
    summary="Connected to the mesh",
)
async def readyz(request: Request) -> Health:
    if not gateway_of(request).ready:
        raise Problem("not-ready", "not connected to NATS")
    return Health(status="ready")
