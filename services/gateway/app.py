"""The ASGI app: the routes of :mod:`services.gateway.routes`, one handler that answers
and audits every refusal as ``application/problem+json``, and the OpenAPI document with
the problem schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .a2a import router as a2a_router
from .gateway import Gateway
from .mcp import McpDoor
from .problems import PROBLEM_JSON, Problem, ProblemBody
from .routes import router


async def refuse(request: Request, problem: Problem) -> JSONResponse:
    """Audit ``problem`` (when connected) and answer it."""
    gateway: Gateway = request.app.state.gateway
    if gateway.ready:
        where = f"{request.method} {request.url.path}"
        caller = getattr(request.state, "caller", None)
        agent = getattr(request.state, "agent", None)
        await gateway.door.audit(problem, where, caller, agent)
    return JSONResponse(
        problem.body(request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


async def on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return await refuse(request, exc)


async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    said = "; ".join(
        f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()
    )
    return await refuse(request, Problem("bad-request", said or "invalid request"))


async def on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    reason = {404: "no-route", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
    return await refuse(request, Problem(reason, str(exc.detail)))


def create_app(gateway: Gateway) -> FastAPI:
    """The ASGI app of ``gateway``. Its lifespan starts and closes the gateway; a gateway
    started already (as tests start it) is left as it is."""

    mcp = McpDoor(gateway)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owned = not gateway.ready
        if owned:
            await gateway.start()
        try:
            async with mcp.running():
                yield
        finally:
            if owned:
                await gateway.close()

    app = FastAPI(
        title="jetmesh HTTP gateway",
        version="1",
        description="Start workflows on a jetmesh mesh and follow them (docs/gateway.md).",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.include_router(router)
    app.include_router(a2a_router)
    app.router.routes.append(mcp.route())
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _drop_validation_errors(schema)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["ProblemBody"] = ProblemBody.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _drop_validation_errors(schema: dict[str, Any]) -> None:
    """Take out FastAPI's own 422 answers: an invalid request is a 400 ``bad-request``
    problem here (:func:`on_invalid`)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.get("responses", {})
            for code in [c for c, r in answers.items() if "HTTPValidationError" in str(r)]:
                del answers[code]
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
