"""The gateway's A2A door: the exposed mesh agents as A2A agents (protocol 1.0, JSON-RPC
binding, the ``a2a-sdk``'s request handler).

- ``GET /a2a/{agent}/.well-known/agent-card.json``: the agent's card: one skill (id the
  agent's name) that takes the agent's input types, its endpoint ``/a2a/{agent}``, bearer
  authentication (an API key or a JWT, as every gateway route).
- ``GET /.well-known/agent-card.json``: the gateway's own card, one skill per exposed
  agent, its endpoint ``/a2a`` routed by skill (``{"skill": "<agent>"}`` in the message's
  metadata).
- ``POST /a2a/{agent}`` and ``POST /a2a``: JSON-RPC (``SendMessage``, ``GetTask``), each
  request authenticated and rate-limited as the HTTP routes are
  (:func:`~services.gateway.routes.caller_of`); a refusal is a problem, audited.

A message starts one workflow through :class:`~services.gateway.door.Door`, as the
authenticated caller: its data part (or its text, for an agent whose input is one string)
is the body; the A2A message id is the idempotency key, so the A2A task id is the workflow
id. The task is answered completed (an artifact with the agent's result) or failed (the
agent's typed error) when the root task ends within the gateway's ``max_wait_s``, else
working; ``GetTask`` reads the workflow's signed log, for the caller who started it only.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec
from a2a.auth.user import User
from a2a.helpers.proto_helpers import (
    get_data_parts,
    get_text_parts,
    new_data_part,
    new_text_message,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext, RequestContextBuilder
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.server.tasks import TaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .auth import HttpCaller
from .door import Door, ends, id_secret, idempotent_ids, logged_outcome
from .gateway import Gateway
from .problems import Problem
from .routes import Caller

A2A_PATH = "/a2a"
CARD_PATH = "/.well-known/agent-card.json"
SKILL_KEY = "skill"
"""The message metadata key that names the agent on the gateway's own endpoint."""
KEY_PREFIX = "a2a:"
"""A message's idempotency key is its message id under this prefix (apart from the
``Idempotency-Key`` of the HTTP route)."""
MAX_MESSAGE_ID = 200
RESULT_SUFFIX = "-result"
"""A completed task's one artifact is ``<task id>-result``."""
INFO_TIMEOUT_S = 0.5
INFO_TTL_S = 30.0
MAX_KEPT_TASKS = 10_000
"""Tasks this replica ran, kept for ``GetTask``; older ones are read from the log."""
BEARER = "bearer"
JSON = "application/json"
TEXT = "text/plain"

_encoder = msgspec.json.Encoder(order="sorted")


# -- what the exposed agents accept ------------------------------------------------------


@dataclass(frozen=True)
class Described:
    """An exposed agent as its replicas describe themselves (``$SRV.INFO``)."""

    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    """Input JSON Schema by input wire type."""


class Directory:
    """The agents the gateway exposes (its certificate's task subjects) and what each
    accepts, asked of their replicas and kept ``INFO_TTL_S``. The answers describe;
    nothing is decided on them (the agent checks every task it gets)."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self._known: dict[str, tuple[float, Described]] = {}

    def exposed(self) -> list[str]:
        mesh = self.door.mesh
        head, tail = f"{mesh.subjects.prefix}.agent.", ".task"
        names = {
            p[len(head) : -len(tail)]
            for p in mesh.certificate.publish
            if p.startswith(head) and p.endswith(tail)
        }
        return sorted(n for n in names if "*" not in n and ">" not in n and self.door.exposes(n))

    async def describe(self, agent: str) -> Described:
        known = self._known.get(agent)
        if known is not None and time.monotonic() - known[0] < INFO_TTL_S:
            return known[1]
        described = Described(agent, "", {})
        try:
            msg = await self.door.mesh.nc.request(f"$SRV.INFO.{agent}", b"", timeout=INFO_TIMEOUT_S)
            described = _described(agent, json.loads(msg.data))
        except Exception:  # informational only: a card without it still routes
            pass
        self._known[agent] = (time.monotonic(), described)
        return described


def _described(agent: str, info: Any) -> Described:
    if not isinstance(info, dict) or info.get("name") != agent:
        return Described(agent, "", {})
    inputs: dict[str, dict[str, Any]] = {}
    for endpoint in info.get("endpoints") or []:
        meta = endpoint.get("metadata") if isinstance(endpoint, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("input_type"), str):
            try:
                schema = json.loads(meta.get("input_schema") or "{}")
            except ValueError:
                schema = {}
            inputs[meta["input_type"]] = schema if isinstance(schema, dict) else {}
    return Described(agent, str(info.get("description") or ""), inputs)


def _one_string_field(schema: dict[str, Any]) -> str | None:
    """The property of an object schema with exactly one required property, a string."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        schema = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
    required = schema.get("required") or []
    props = schema.get("properties") or {}
    if len(required) == 1 and props.get(required[0], {}).get("type") == "string":
        return str(required[0])
    return None


# -- cards ---------------------------------------------------------------------------------


def _security() -> dict[str, Any]:
    scheme = HTTPAuthSecurityScheme(
        scheme="Bearer",
        bearer_format="API key or JWT",
        description="Authorization: Bearer <API key or JWT>, as the gateway's HTTP routes",
    )
    return {
        "security_schemes": {BEARER: SecurityScheme(http_auth_security_scheme=scheme)},
        "security_requirements": [SecurityRequirement(schemes={BEARER: StringList()})],
    }


def skill_of(described: Described) -> AgentSkill:
    """The one skill of an exposed agent: its id the agent's name, its tags the input
    types, its examples the input schemas."""
    types = sorted(described.inputs)
    text = described.description or f"the mesh agent {described.name}"
    if types:
        text += f" (accepts {', '.join(types)} as a data part)"
    modes = [JSON, TEXT] if _text_field(described) else [JSON]
    return AgentSkill(
        id=described.name,
        name=described.name,
        description=text,
        tags=["jetmesh", *types],
        examples=[json.dumps(described.inputs[t], sort_keys=True) for t in types],
        input_modes=modes,
        output_modes=[JSON],
    )


def _text_field(described: Described) -> str | None:
    if len(described.inputs) != 1:
        return None
    return _one_string_field(next(iter(described.inputs.values())))


MESH_SKILL = AgentSkill(id="mesh", name="mesh", description="a mesh agent", tags=["jetmesh"])
"""The request handler's own card's skill (it checks capabilities only)."""


def card(name: str, description: str, url: str, skills: list[AgentSkill]) -> AgentCard:
    """An agent card with the JSON-RPC interface at ``url`` and bearer authentication."""
    return AgentCard(
        name=name,
        description=description,
        version="1",
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=v
            )
            for v in (PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_0_3)
        ],
        capabilities=AgentCapabilities(streaming=False, push_notifications=False),
        default_input_modes=[JSON, TEXT],
        default_output_modes=[JSON],
        skills=skills,
        **_security(),
    )


# -- who calls, and for which agent --------------------------------------------------------


class CallerUser(User):
    """The authenticated HTTP caller, as the SDK's user (tasks are scoped to it)."""

    def __init__(self, caller: HttpCaller) -> None:
        self.caller = caller

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.caller.key


class CallContexts(DefaultServerCallContextBuilder):
    """The SDK's call context of an authenticated request: its caller (the SDK's user)
    and path agent; the request's headers but its credential."""

    def build(self, request: Request) -> ServerCallContext:
        caller: HttpCaller = request.state.caller
        context = super().build(request)
        context.user = CallerUser(caller)
        context.state.get("headers", {}).pop("authorization", None)
        context.state.update(
            caller=caller,
            agent=getattr(request.state, "agent", None),
            where=f"{request.method} {request.url.path}",
        )
        return context


def _caller(context: ServerCallContext) -> HttpCaller:
    caller = context.state.get("caller")
    if not isinstance(caller, HttpCaller):
        raise InvalidParamsError(message="not authenticated")
    return caller


class Requests(RequestContextBuilder):
    """Each message's agent (the path's, or the skill its metadata names) and task id
    (the workflow id its message id derives); a refusal is audited, then raised."""

    def __init__(self, door: Door, directory: Directory) -> None:
        self.door = door
        self.directory = directory
        self._secret = id_secret(door.mesh)

    async def build(
        self,
        context: ServerCallContext,
        params: Any = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        caller = _caller(context)
        message: Message = params.message
        agent = context.state.get("agent")
        if agent is None:
            skill = _metadata(message).get(SKILL_KEY) or _metadata(params).get(SKILL_KEY)
            if not isinstance(skill, str) or not self.door.exposes(skill):
                await self._refuse(context, "unknown-agent", f"no skill {skill!r} here", skill)
            agent = skill
        context.state["agent"] = agent
        if task_id:
            await self._refuse(
                context, "bad-request", "a mesh task takes one message: send a new one", agent
            )
        mid = message.message_id
        if not (0 < len(mid) <= MAX_MESSAGE_ID and mid.isprintable()):
            await self._refuse(context, "bad-request", "messageId: 1-200 printable", agent)
        key = KEY_PREFIX + mid
        workflow, _ = idempotent_ids(self._secret, caller.key, key)
        context.state["key"] = key
        return RequestContext(
            call_context=context,
            request=params,
            task_id=workflow,
            context_id=context_id or workflow,
            task=task,
        )

    async def _refuse(
        self, context: ServerCallContext, reason: str, detail: str, agent: Any
    ) -> None:
        problem = Problem(reason, detail)
        where = str(context.state.get("where", "A2A"))
        name = agent if isinstance(agent, str) else None
        await self.door.audit(problem, where, _caller(context), name)
        raise InvalidParamsError(message=f"{reason}: {detail}")


def _metadata(holder: Any) -> dict[str, Any]:
    if not holder.HasField("metadata"):
        return {}
    return dict(holder.metadata)


# -- running a message on the mesh ---------------------------------------------------------


def _ints(value: Any) -> Any:
    """JSON numbers from a protobuf ``Value`` (all doubles) back to ints where whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    return value


def _part(data: Any) -> Part:
    return new_data_part(data, media_type=JSON)


def _text(task_id: str, context_id: str, text: str) -> Message:
    return new_text_message(text, context_id=context_id, task_id=task_id, role=Role.ROLE_AGENT)


class MeshExecutor(AgentExecutor):
    """Sends a message's body to its agent through the :class:`Door`, as its caller."""

    def __init__(self, gateway: Gateway, directory: Directory, tasks: WorkflowTasks) -> None:
        self.gateway = gateway
        self.directory = directory
        self.tasks = tasks

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.tasks.running.add(context.task_id or "")
        try:
            await self._execute(context, event_queue)
        finally:
            self.tasks.running.discard(context.task_id or "")

    async def _execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        message = context.message
        assert message is not None
        await event_queue.enqueue_event(
            Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[message],
            )
        )
        updater = TaskUpdater(event_queue, task_id, context_id)
        state = context.call_context.state
        caller, agent, key = _caller(context.call_context), state["agent"], state["key"]
        door = self.gateway.door
        try:
            body = await self._body(agent, message)
            started = await door.start(
                caller, agent, body, type_="", key=key, wait_s=self.gateway.settings.max_wait_s
            )
        except Problem as problem:
            await door.audit(problem, str(state.get("where", "A2A")), caller, agent)
            await updater.reject(_text(task_id, context_id, f"{problem.reason}: {problem.detail}"))
            return
        if started.outcome is None:
            await updater.start_work(
                _text(task_id, context_id, "running on the mesh: GetTask for its outcome")
            )
            return
        await finish(updater, task_id, context_id, started.outcome)

    async def _body(self, agent: str, message: Message) -> bytes:
        """The message's body: its one data part, or its text for an agent whose only
        input has one required string property.

        Raises:
            Problem: ``bad-request``, ``body-too-large``.
        """
        data = get_data_parts(message.parts)
        if len(data) > 1:
            raise Problem("bad-request", "send one data part")
        if data:
            body = _ints(data[0])
        else:
            texts = get_text_parts(message.parts)
            field = _text_field(await self.directory.describe(agent))
            if not texts or field is None:
                raise Problem("bad-request", f"{agent} takes a data part (see its agent card)")
            body = {field: "\n".join(texts)}
        raw = _encoder.encode(body)
        limit = self.gateway.mesh_settings.max_payload_bytes // 2
        if len(raw) > limit:
            raise Problem("body-too-large", f"the body exceeds {limit} bytes")
        return raw

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise UnsupportedOperationError(message="a workflow on the mesh is not canceled")


async def finish(
    updater: TaskUpdater, task_id: str, context_id: str, outcome: dict[str, Any]
) -> None:
    """End the task as the root task ended: completed with the result as an artifact,
    or failed with the agent's typed error."""
    if outcome["status"] == "completed":
        await updater.add_artifact(
            [_part(outcome.get("result"))],
            artifact_id=task_id + RESULT_SUFFIX,
            name="result",
            metadata={"type": outcome.get("type") or ""},
        )
        await updater.complete()
        return
    await updater.failed(_text(task_id, context_id, _said(outcome)))


def _said(outcome: dict[str, Any]) -> str:
    error = outcome.get("error") or {}
    return f"{error.get('reason') or ''}: {error.get('message') or ''}"


# -- tasks: this replica's, else the workflow's signed log --------------------------------


_ENDED = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_CANCELED,
    }
)


class WorkflowTasks(TaskStore):
    """The A2A tasks of a gateway replica: those it ran (kept, up to ``MAX_KEPT_TASKS``),
    and any other the caller started, rebuilt from the workflow's verified events (the
    ``accepted`` event this gateway role signed for the caller, then its root task's
    end). A task is found for the caller who started it only."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self._kept: OrderedDict[tuple[str, str], Task] = OrderedDict()
        self.running: set[str] = set()
        """The tasks this replica's executor is running: their kept state is the truth
        until they end; a task left working (its wait over) is read from the log."""

    async def save(self, task: Task, context: ServerCallContext) -> None:
        key = (context.user.user_name, task.id)
        kept = Task()
        kept.CopyFrom(task)
        self._kept[key] = kept
        self._kept.move_to_end(key)
        while len(self._kept) > MAX_KEPT_TASKS:
            self._kept.popitem(last=False)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        kept = self._kept.get((context.user.user_name, task_id))
        if kept is not None and (task_id in self.running or kept.status.state in _ENDED):
            copy = Task()
            copy.CopyFrom(kept)
            return copy
        return await self.from_log(task_id, _caller(context))

    async def from_log(self, workflow: str, caller: HttpCaller) -> Task | None:
        found = await self.door.accepted(workflow, caller)
        if found is None:
            return None
        agent, root = found.event.target or "", found.event.task or ""
        task = Task(
            id=workflow,
            context_id=workflow,
            status=TaskStatus(state=TaskState.TASK_STATE_WORKING),
        )
        async for _, logged in self.door.events(workflow):
            if ends(logged, root, agent):
                outcome = logged_outcome(logged)
                if outcome["status"] == "completed":
                    task.status.state = TaskState.TASK_STATE_COMPLETED
                    artifact = task.artifacts.add(
                        artifact_id=workflow + RESULT_SUFFIX,
                        name="result",
                        parts=[_part(outcome.get("result"))],
                    )
                    artifact.metadata.update({"type": outcome.get("type") or ""})
                else:
                    task.status.state = TaskState.TASK_STATE_FAILED
                    task.status.message.CopyFrom(_text(workflow, workflow, _said(outcome)))
                break
        return task

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        raise UnsupportedOperationError(message="tasks are read one at a time: GetTask")

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        self._kept.pop((context.user.user_name, task_id), None)


# -- the routes ----------------------------------------------------------------------------


class A2ADoor:
    """The SDK's request handler and JSON-RPC dispatcher over one started gateway."""

    def __init__(self, gateway: Gateway) -> None:
        door = gateway.door
        self.door = door
        self.directory = Directory(door)
        tasks = WorkflowTasks(door)
        self.handler = DefaultRequestHandler(
            agent_executor=MeshExecutor(gateway, self.directory, tasks),
            task_store=tasks,
            agent_card=card("jetmesh", "the mesh's agents", A2A_PATH, [MESH_SKILL]),
            request_context_builder=Requests(door, self.directory),
        )
        self.dispatcher = JsonRpcDispatcher(
            self.handler, context_builder=CallContexts(), enable_v0_3_compat=True
        )


def a2a_of(request: Request) -> A2ADoor:
    """The app's A2A door, made once its gateway is started."""
    gateway: Gateway = request.app.state.gateway
    if not gateway.ready:
        raise Problem("not-ready", "not connected to NATS")
    door: A2ADoor | None = getattr(request.app.state, "a2a", None)
    if door is None or door.door is not gateway.door:
        door = request.app.state.a2a = A2ADoor(gateway)
    return door


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _exposed(a2a: A2ADoor, agent: str, request: Request) -> None:
    request.state.agent = agent
    if not a2a.door.exposes(agent):
        raise Problem("unknown-agent", f"the gateway does not expose {agent!r}")


router = APIRouter(tags=["A2A"])


@router.get(CARD_PATH, summary="The gateway's A2A agent card: a skill per exposed agent")
async def gateway_card(request: Request) -> JSONResponse:
    a2a = a2a_of(request)
    skills = [skill_of(await a2a.directory.describe(a)) for a in a2a.directory.exposed()]
    text = (
        "The mesh agents this gateway exposes, one skill each; name the skill in the "
        f'message metadata ({{"{SKILL_KEY}": "<skill id>"}}), or use each agent\'s own '
        f"card at {A2A_PATH}/<agent>{CARD_PATH}."
    )
    made = card("jetmesh gateway", text, _base(request) + A2A_PATH, skills)
    return JSONResponse(agent_card_to_dict(made))


@router.get(A2A_PATH + "/{agent}" + CARD_PATH, summary="An exposed agent's A2A agent card")
async def agent_card(request: Request, agent: str) -> JSONResponse:
    a2a = a2a_of(request)
    _exposed(a2a, agent, request)
    described = await a2a.directory.describe(agent)
    text = described.description or f"the mesh agent {agent}"
    made = card(agent, text, f"{_base(request)}{A2A_PATH}/{agent}", [skill_of(described)])
    return JSONResponse(agent_card_to_dict(made))


@router.post(A2A_PATH, summary="A2A JSON-RPC, routed by the skill a message names")
async def gateway_rpc(request: Request, caller: Caller) -> Response:
    request.state.agent = None
    return await a2a_of(request).dispatcher.handle_requests(request)


@router.post(A2A_PATH + "/{agent}", summary="A2A JSON-RPC to an exposed agent")
async def agent_rpc(request: Request, agent: str, caller: Caller) -> Response:
    a2a = a2a_of(request)
    _exposed(a2a, agent, request)
    return await a2a.dispatcher.handle_requests(request)
