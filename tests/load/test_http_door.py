"""The http door against a stand-in for the gateway's task endpoint (an httpx transport in
this process): what it sends, and how each answer counts."""

from __future__ import annotations

import json

import httpx

from jetmesh.load import Scenario, http_door, run_scenario

seen: list[httpx.Request] = []


def gateway(request: httpx.Request) -> httpx.Response:
    """Answers by the request's number: 0 completed, 1 failed, 2 still running, 3 refused."""
    seen.append(request)
    n = json.loads(request.content)["n"] % 4
    ids = {"workflow": f"wf{n}", "task": f"t{n}"}
    if n == 0:
        return httpx.Response(200, json=ids | {"status": "completed", "result": {"ok": True}})
    if n == 1:
        error = {"type": "Reject", "message": "no", "reason": "dead-lettered"}
        return httpx.Response(200, json=ids | {"status": "failed", "error": error})
    if n == 2:
        return httpx.Response(202, json=ids | {"status": "accepted"})
    return httpx.Response(401, json={"type": "bad-key", "title": "unknown API key"})


async def test_answers_errors_and_lost_requests_through_the_gateway() -> None:
    scenario = Scenario.model_validate(
        {
            "name": "gw",
            "agent": "echo",
            "target": {"door": "http", "base_url": "http://gw.test", "api_key": "k1"},
            "payload": {"template": '{"n": {n}}', "type": "demo.Echo/1"},
            "arrival": {"model": "constant", "rate": 40},
            "seconds": 1,
            "timeout_s": 2,
            "slo": {"no_loss": True},
        }
    )
    seen.clear()
    async with http_door(scenario, httpx.MockTransport(gateway)) as door:
        report = await run_scenario(scenario, door.send, duplicates=door.duplicates)
    assert (report.sent, report.completed, report.errors, report.lost) == (40, 10, 20, 10)
    assert report.dead_lettered == 10
    assert report.target == "http http://gw.test echo"
    assert report.verdict == "fail"
    first = seen[0]
    assert first.url.path == "/v1/agents/echo/tasks"
    assert first.url.params["type"] == "demo.Echo/1"
    assert first.headers["Authorization"] == "Bearer k1"
    assert first.headers["Prefer"] == "wait=2"
