"""Every refusal of the gateway: an RFC 9457 problem (``application/problem+json``) with a
stable ``reason`` code, raised as :class:`Problem` and answered by one handler.

``type`` is ``urn:jetmesh:gateway:<reason>``; docs/gateway.md lists every reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:jetmesh:gateway:"

TITLES: dict[str, tuple[int, str]] = {
    "missing-credentials": (401, "No credentials"),
    "unknown-api-key": (401, "Unknown API key"),
    "token-malformed": (401, "Malformed token"),
    "token-expired": (401, "Token expired"),
    "token-not-yet-valid": (401, "Token not yet valid"),
    "wrong-issuer": (401, "Wrong issuer"),
    "wrong-audience": (401, "Wrong audience"),
    "unknown-key": (401, "Unknown signing key"),
    "algorithm-refused": (401, "Algorithm refused"),
    "bad-signature": (401, "Bad signature"),
    "claims-invalid": (401, "Claims invalid"),
    "jwks-unavailable": (503, "Issuer keys unavailable"),
    "unknown-agent": (404, "Unknown agent"),
    "unknown-workflow": (404, "Unknown workflow"),
    "body-not-json": (400, "Body is not JSON"),
    "bad-request": (400, "Bad request"),
    "body-too-large": (413, "Body too large"),
    "body-rejected": (422, "Body rejected by the agent's input schema"),
    "idempotency-conflict": (409, "Idempotency key reused with another body"),
    "rate-limited": (429, "Too many requests"),
    "not-stored": (503, "Task not stored"),
    "not-ready": (503, "Not connected to the mesh"),
    "no-route": (404, "No such route"),
    "method-not-allowed": (405, "Method not allowed"),
}
"""Every reason: its HTTP status and title."""


class ProblemBody(BaseModel):
    """An RFC 9457 problem, with the gateway's stable ``reason`` code."""

    type: str = Field(description="urn:jetmesh:gateway:<reason>")
    title: str
    status: int
    detail: str
    reason: str = Field(description="a stable code; docs/gateway.md lists them")
    instance: str | None = Field(default=None, description="the request's path")
    workflow: str | None = Field(default=None, description="the workflow it concerns, if any")


class Problem(Exception):
    """A refused request: answered as a problem and audited."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        workflow: str | None = None,
    ) -> None:
        if reason not in TITLES:
            raise ValueError(f"unknown problem reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status, self.title = TITLES[reason]
        self.headers = headers or {}
        self.workflow = workflow

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return ProblemBody(
            type=TYPE_PREFIX + self.reason,
            title=self.title,
            status=self.status,
            detail=self.detail,
            reason=self.reason,
            instance=instance,
            workflow=self.workflow,
        ).model_dump(exclude_none=True)


def responses(*reasons: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that can refuse for ``reasons``: one entry per
    status, each a problem, with the reasons listed."""
    by_status: dict[int, list[str]] = {}
    for reason in reasons:
        by_status.setdefault(TITLES[reason][0], []).append(reason)
    return {
        status: {
            "description": "; ".join(f"`{r}`: {TITLES[r][1]}" for r in sorted(named)),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}},
        }
        for status, named in sorted(by_status.items())
    }


AUTH_REASONS = (
    "missing-credentials",
    "unknown-api-key",
    "token-malformed",
    "token-expired",
    "token-not-yet-valid",
    "wrong-issuer",
    "wrong-audience",
    "unknown-key",
    "algorithm-refused",
    "bad-signature",
    "claims-invalid",
    "jwks-unavailable",
    "rate-limited",
)
"""What every authenticated route can answer."""
