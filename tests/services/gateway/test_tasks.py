"""POST /v1/agents/{agent}/tasks on servers that enforce the policy: stored before 202,
idempotency in the signed log, refusals as audited problems."""

from __future__ import annotations

import asyncio

import pytest

from jetmesh import events as ev
from jetmesh.event_log import read_events
from services.gateway import GatewaySettings
from services.gateway.door import REFUSED, idempotent_ids
from services.gateway.settings import AUDIT_WORKFLOW
from tests.services.gateway.conftest import ALICE_KEY, API_KEYS, BOB_KEY, Served, auth, serve

pytestmark = pytest.mark.integration


async def accepted_events(served: Served, workflow: str) -> list[ev.Event]:
    logged = await read_events(served.gateway.door.mesh, workflow)
    return [e.event for e in logged if e.verified and e.event.kind == ev.ACCEPTED]


async def audited(served: Served, reason: str) -> list[ev.Event]:
    """The gateway's verified refusal events with ``reason`` (waits for them to be stored)."""
    mesh = served.gateway.door.mesh
    assert await mesh.flush_events()
    logged = await read_events(mesh, AUDIT_WORKFLOW)
    return [
        e.event
        for e in logged
        if e.verified
        and e.signer == "gateway"
        and e.event.kind == REFUSED
        and e.event.reason == reason
    ]


async def test_a_task_is_stored_before_202_and_runs_for_the_keys_caller(served: Served) -> None:
    r = await served.post("echo", {"text": "hi"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "accepted"
    assert r.headers["location"] == f"/v1/workflows/{body['workflow']}"
    accepted = await accepted_events(served, body["workflow"])
    assert [(e.task, e.target, e.caller) for e in accepted] == [(body["task"], "echo", "alice")]

    r = await served.post("echo", {"text": "hi"}, headers={"Prefer": "wait=10"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == {
        "text": "HI",
        "caller": "alice",
        "tenant": "acme",
        "scopes": ["kb:read"],
    }
    assert r.headers["preference-applied"] == "wait=10"


async def test_wait_times_out_to_202_and_a_typed_error_is_a_failed_200(served: Served) -> None:
    r = await served.post("echo", {"text": "slow", "pause_s": 1.0}, params={"wait": "0.05"})
    assert r.status_code == 202, r.text
    r = await served.post("echo", {"text": "no"}, headers={"Prefer": "wait=10"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed"
    error = r.json()["error"]
    assert error["reason"] == "rejected-by-handler"
    assert "said-no" in error["message"]


async def test_the_same_idempotency_key_starts_one_workflow(served: Served) -> None:
    key = {"Idempotency-Key": "order-17"}
    first = await served.post("echo", {"text": "once", "pause_s": 0}, headers=key)
    assert first.status_code == 202, first.text
    again = await served.post("echo", {"pause_s": 0, "text": "once"}, headers=key)
    assert again.status_code in (200, 202), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert (again.json()["workflow"], again.json()["task"]) == (
        first.json()["workflow"],
        first.json()["task"],
    )
    workflow = first.json()["workflow"]
    assert len(await accepted_events(served, workflow)) == 1
    # another caller's same key is another workflow
    bobs = await served.post("echo", {"text": "once"}, key=BOB_KEY, headers=key)
    assert bobs.status_code == 202
    assert bobs.json()["workflow"] != workflow
    # concurrent repeats still give one accepted event
    key2 = {"Idempotency-Key": "order-18"}
    many = await asyncio.gather(
        *(served.post("echo", {"text": "x"}, headers=key2) for _ in range(5))
    )
    assert len({r.json()["workflow"] for r in many}) == 1
    assert len(await accepted_events(served, many[0].json()["workflow"])) == 1


async def test_the_same_key_with_another_body_is_a_409(served: Served) -> None:
    key = {"Idempotency-Key": "order-19"}
    first = await served.post("echo", {"text": "one"}, headers=key)
    assert first.status_code == 202
    r = await served.post("echo", {"text": "two"}, headers=key)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["reason"] == "idempotency-conflict"
    assert problem["type"] == "urn:jetmesh:gateway:idempotency-conflict"
    assert problem["workflow"] == first.json()["workflow"]
    assert len(await accepted_events(served, first.json()["workflow"])) == 1
    assert [e.caller for e in await audited(served, "idempotency-conflict")] == ["acme/alice"]


@pytest.mark.parametrize(
    ("agent", "body", "headers", "status", "reason"),
    [
        ("other", {"text": "x"}, {}, 404, "unknown-agent"),
        ("toolgate", {"text": "x"}, {}, 404, "unknown-agent"),
        ("no.such", {"text": "x"}, {}, 404, "unknown-agent"),
        ("echo", {"text": 5}, {}, 422, "body-rejected"),
        ("echo", {"text": "x"}, {"Authorization": "Bearer nope"}, 401, "unknown-api-key"),
        ("echo", {"text": "x"}, {"Authorization": "Basic abc"}, 401, "missing-credentials"),
        ("echo", {"text": "x"}, {"Prefer": "wait=soon"}, 400, "bad-request"),
    ],
)
async def test_bad_requests_are_typed_problems_and_audited(
    served: Served, agent: str, body: object, headers: dict[str, str], status: int, reason: str
) -> None:
    r = await served.post(agent, body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert (problem["status"], problem["reason"]) == (status, reason)
    assert {"type", "title", "detail"} <= set(problem)
    assert len(await audited(served, reason)) == 1


async def test_a_body_that_is_not_json_or_too_large_is_refused(served: Served) -> None:
    r = await served.http.post("/v1/agents/echo/tasks", content=b"{nope", headers=auth(ALICE_KEY))
    assert (r.status_code, r.json()["reason"]) == (400, "body-not-json")
    big = b'{"text": "' + b"x" * served.secured.settings.max_payload_bytes + b'"}'
    r = await served.http.post("/v1/agents/echo/tasks", content=big, headers=auth(ALICE_KEY))
    assert (r.status_code, r.json()["reason"]) == (413, "body-too-large")


def test_idempotent_ids_are_keyed_by_the_roles_secret() -> None:
    ids = idempotent_ids(b"s" * 32, "acme/alice", "order-1")
    assert ids == idempotent_ids(b"s" * 32, "acme/alice", "order-1")
    assert ids != idempotent_ids(b"t" * 32, "acme/alice", "order-1")
    assert ids != idempotent_ids(b"s" * 32, "acme/bob", "order-1")
    workflow, task = ids
    assert workflow != task


async def test_another_replica_of_the_gateway_finds_the_same_key(served: Served) -> None:
    key = {"Idempotency-Key": "order-20"}
    first = await served.post("echo", {"text": "once"}, headers=key)
    assert first.status_code == 202
    other = await serve(served.secured, GatewaySettings(api_keys=API_KEYS))
    try:
        again = await other.post("echo", {"text": "once"}, headers=key)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["workflow"] == first.json()["workflow"]
    finally:
        await other.http.aclose()
        await other.gateway.close()
    assert len(await accepted_events(served, first.json()["workflow"])) == 1
