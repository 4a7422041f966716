"""A2A messages as workflows: who calls and for which agent (the SDK's call and request
contexts), the executor that starts the workflow through the :class:`Door`, and the task
store that answers ``GetTask`` from this replica or from the workflow's signed log.
"""

from __future__ import annotations

from collections import OrderedDict
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
from a2a.server.routes.common import DefaultServerCallContextBuilder
from a2a.server.tasks import TaskStore, TaskUpdater
from a2a.types import (
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from fastapi import Request

from .a2a_cards import JSON, text_field
from .auth import HttpCaller
from .directory import Directory
from .door import Door, ends, id_secret, idempotent_ids, logged_outcome
from .gateway import Gateway
from .problems import Problem

SKILL_KEY = "skill"
"""The message metadata key that names the agent on the gateway's own endpoint."""
KEY_PREFIX = "a2a:"
"""A message's idempotency key is its message id under this prefix (apart from the
``Idempotency-Key`` of the HTTP route)."""
MAX_MESSAGE_ID = 200
RESULT_SUFFIX = "-result"
"""A completed task's one artifact is ``<task id>-result``."""
MAX_KEPT_TASKS = 10_000
"""Tasks this replica ran, kept for ``GetTask``; older ones are read from the log."""

_encoder = msgspec.json.Encoder(order="sorted")


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

    def __init__(self, door: Door) -> None:
        self.door = door
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
            field = text_field(await self.directory.describe(agent))
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
