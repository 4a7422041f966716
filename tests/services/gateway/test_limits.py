"""Per-caller rate limits (a token bucket per caller), health, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute

from services.gateway import GatewaySettings, create_app
from services.gateway.gateway import Gateway
from services.gateway.limits import RateLimits
from services.gateway.routes import router
from tests.harness.secured import SecuredMesh
from tests.services.gateway.conftest import API_KEYS, BOB_KEY, Served, serve

pytestmark = pytest.mark.integration


def test_a_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limits = RateLimits(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert [limits.take("a"), limits.take("a")] == [0.0, 0.0]
    assert limits.take("a") == pytest.approx(0.5)
    assert limits.take("b") == 0.0
    now[0] = 0.5
    assert limits.take("a") == 0.0
    assert limits.take("a") > 0


@pytest.fixture
async def tight(enforced: SecuredMesh) -> AsyncIterator[Served]:
    s = await serve(enforced, GatewaySettings(api_keys=API_KEYS, rate_per_s=0.01, burst=2))
    try:
        yield s
    finally:
        await s.http.aclose()
        await s.gateway.close()


async def test_a_caller_over_its_rate_gets_429_with_retry_after(tight: Served) -> None:
    codes = [(await tight.post("echo", {"text": "x"})).status_code for _ in range(2)]
    assert codes == [202, 202]
    r = await tight.post("echo", {"text": "x"})
    assert r.status_code == 429
    assert r.json()["reason"] == "rate-limited"
    assert int(r.headers["retry-after"]) >= 1
    assert (await tight.post("echo", {"text": "x"}, key=BOB_KEY)).status_code == 202
    door = tight.gateway.door
    door._throttled_audits = RateLimits(rate_per_s=1.0, burst=1, clock=lambda: 0.0)
    skipped = door.audits_skipped
    for _ in range(3):
        assert (await tight.post("echo", {"text": "x"})).status_code == 429
    assert door.audits_skipped == skipped + 2  # one rate-limited refusal a second, audited


async def test_health_and_the_openapi_document(served: Served) -> None:
    assert (await served.http.get("/healthz")).json() == {"status": "ok"}
    assert (await served.http.get("/readyz")).json() == {"status": "ready"}
    doc = (await served.http.get("/openapi.json")).json()
    assert "ProblemBody" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    expected = {
        ("/v1/agents/{agent}/tasks", "post"),
        ("/v1/workflows/{workflow}", "get"),
        ("/v1/workflows/{workflow}/events", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    }
    documented = {(path, m) for path, ops in doc["paths"].items() for m in ops}
    mine = {
        (route.path, method.lower())
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert mine == expected
    assert expected <= documented
    for path, method in expected - {("/healthz", "get")}:
        op = doc["paths"][path][method]
        errors = {code: r for code, r in op["responses"].items() if int(code) >= 400}
        assert errors, (path, method)
        for code, response in errors.items():
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ProblemBody"}, (path, code)
    task_errors = set(doc["paths"]["/v1/agents/{agent}/tasks"]["post"]["responses"])
    assert {"400", "401", "404", "409", "413", "422", "429", "503"} <= task_errors
    r = await served.http.get("/v1/nothing")
    assert (r.status_code, r.json()["reason"]) == (404, "no-route")


async def test_refusals_of_unauthenticated_requests_are_audited_up_to_the_rate(
    tight: Served,
) -> None:
    for _ in range(4):
        r = await tight.post("echo", {"text": "x"}, key="wrong")
        assert r.json()["reason"] == "unknown-api-key"
    assert tight.gateway.door.audits_skipped == 2


async def test_readyz_is_a_503_before_the_gateway_connects(enforced: SecuredMesh) -> None:
    gateway = Gateway(GatewaySettings(api_keys=API_KEYS), enforced.settings)
    app = create_app(gateway)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        r = await http.get("/readyz")
        assert (r.status_code, r.json()["reason"]) == (503, "not-ready")
        assert (await http.get("/healthz")).status_code == 200
