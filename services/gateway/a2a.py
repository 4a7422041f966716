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

from typing import Annotated

from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from .a2a_cards import MESH_SKILL, card, skill_of
from .a2a_tasks import SKILL_KEY, CallContexts, MeshExecutor, Requests, WorkflowTasks
from .auth import HttpCaller
from .gateway import Gateway
from .problems import Problem
from .routes import bearer, caller_of

A2A_PATH = "/a2a"
CARD_PATH = "/.well-known/agent-card.json"


class A2ADoor:
    """The SDK's request handler and JSON-RPC dispatcher over one started gateway."""

    def __init__(self, gateway: Gateway) -> None:
        door = gateway.door
        self.door = door
        self.directory = gateway.directory
        tasks = WorkflowTasks(door)
        self.handler = DefaultRequestHandler(
            agent_executor=MeshExecutor(gateway, self.directory, tasks),
            task_store=tasks,
            agent_card=card("jetmesh", "the mesh's agents", A2A_PATH, [MESH_SKILL]),
            request_context_builder=Requests(door),
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


async def a2a_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> HttpCaller:
    """The caller, as every gateway route has it; a 401 also says ``WWW-Authenticate:
    Bearer`` (RFC 6750), as the cards' security scheme announces."""
    try:
        return await caller_of(request, credentials)
    except Problem as problem:
        if problem.status == 401:
            challenge = 'Bearer realm="jetmesh"'
            if problem.reason != "missing-credentials":
                challenge += f', error="invalid_token", error_description="{problem.reason}"'
            problem.headers["WWW-Authenticate"] = challenge
        raise


Caller = Annotated[HttpCaller, Depends(a2a_caller)]
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
