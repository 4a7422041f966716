"""jetmesh.telemetry.metrics in this process: a delivery's outcome and duration, in flight,
redeliveries, the counters by reason and error type, token usage and cost, the OTLP switch,
and Redis errors counted where memory and the ledger meet them.

The provider is the process's one (installed once, as ``jetmesh run`` does): each test uses
roles of its own and compares figures before and after."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from jetmesh import MemoryDenied
from jetmesh.embedded import RedisServer, free_port
from jetmesh.memory.refused import refused as memory_refused
from jetmesh.memory.working import WorkingMemory
from jetmesh.runtime.ledger import StepLedger
from jetmesh.telemetry import metrics

Labels = frozenset[tuple[str, str]]


@pytest.fixture(scope="module")
def installed() -> metrics.Installed:
    meters = metrics.install(["unit"], prometheus=True)
    assert meters is not None
    assert metrics.install(["other"], prometheus=True) is meters, "one provider a process"
    return meters


def scrape(meters: metrics.Installed) -> dict[tuple[str, Labels], float]:
    text = metrics.exposition(meters.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(meters: metrics.Installed, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, got), v in scrape(meters).items() if n == name and want <= got)


def role() -> str:
    return f"unit-{uuid4().hex[:8]}"


def test_a_delivery_is_in_flight_then_timed_by_its_outcome(installed: metrics.Installed) -> None:
    name = role()
    count = "jetmesh_task_duration_seconds_count"
    with metrics.handling(name, attempt=1):
        assert value(installed, "jetmesh_tasks_in_flight", jetmesh_role=name) == 1.0
        metrics.ended(metrics.COMPLETED)
    assert value(installed, "jetmesh_tasks_in_flight", jetmesh_role=name) == 0.0
    assert value(installed, count, jetmesh_role=name, jetmesh_outcome="completed") == 1.0
    assert value(installed, "jetmesh_task_redeliveries_total", jetmesh_role=name) == 0.0

    with metrics.handling(name, attempt=3):
        pass  # nothing said how it ended: it went back
    with pytest.raises(RuntimeError), metrics.handling(name, attempt=1):
        raise RuntimeError("crashed")
    assert value(installed, count, jetmesh_role=name, jetmesh_outcome="retried") == 2.0
    assert value(installed, "jetmesh_task_redeliveries_total", jetmesh_role=name) == 1.0
    assert value(installed, "jetmesh_tasks_in_flight", jetmesh_role=name) == 0.0
    bucket = "jetmesh_task_duration_seconds_bucket"
    assert value(installed, bucket, jetmesh_role=name, le="60.0") == 3.0
    assert value(installed, bucket, jetmesh_role=name, le="+Inf") == 3.0


def test_an_outcome_set_outside_a_delivery_goes_nowhere(installed: metrics.Installed) -> None:
    name = role()
    metrics.ended(metrics.FAILED)
    with metrics.handling(name, attempt=1):
        pass
    count = "jetmesh_task_duration_seconds_count"
    assert value(installed, count, jetmesh_role=name, jetmesh_outcome="retried") == 1.0
    assert value(installed, count, jetmesh_role=name, jetmesh_outcome="failed") == 0.0


def test_counters_by_reason_and_error_type(installed: metrics.Installed) -> None:
    name = role()
    metrics.refused(name, "bad-signature")
    metrics.refused(name, "bad-signature")
    metrics.dead_lettered(name, "max-deliveries")
    metrics.memory_error(name, "MemoryDenied")
    metrics.ledger_error(name, "ConnectionError")
    assert value(installed, "jetmesh_refusals_total", jetmesh_role=name) == 2.0
    assert (
        value(
            installed,
            "jetmesh_dead_letters_total",
            jetmesh_role=name,
            jetmesh_reason="max-deliveries",
        )
        == 1.0
    )
    assert (
        value(
            installed, "jetmesh_memory_errors_total", jetmesh_role=name, error_type="MemoryDenied"
        )
        == 1.0
    )
    assert (
        value(
            installed,
            "jetmesh_ledger_errors_total",
            jetmesh_role=name,
            error_type="ConnectionError",
        )
        == 1.0
    )


def test_token_usage_and_cost_by_role_caller_tenant_and_model(
    installed: metrics.Installed,
) -> None:
    name = role()
    call = {"caller": "alice", "tenant": "acme", "model": "m-1"}
    metrics.model_used(name, **call, tokens_in=120, tokens_out=30, cost_usd=0.5)
    metrics.model_used(name, **call, tokens_in=80, tokens_out=10, cost_usd=None)  # unpriced
    labels = {
        "jetmesh_role": name,
        "jetmesh_caller": "alice",
        "jetmesh_tenant": "acme",
        "gen_ai_request_model": "m-1",
    }
    tokens = "gen_ai_client_token_usage"
    assert value(installed, f"{tokens}_sum", gen_ai_token_type="input", **labels) == 200.0
    assert value(installed, f"{tokens}_sum", gen_ai_token_type="output", **labels) == 40.0
    assert value(installed, f"{tokens}_count", gen_ai_operation_name="chat", **labels) == 4.0
    assert value(installed, f"{tokens}_bucket", le="256", **labels) == 4.0
    assert value(installed, f"{tokens}_bucket", le="64", **labels) == 2.0, "30 and 10 out"
    assert value(installed, "jetmesh_model_cost_USD_total", **labels) == 0.5


def test_redis_errors_of_memory_and_the_ledger_are_counted(installed: metrics.Installed) -> None:
    name = role()
    with pytest.raises(MemoryDenied), memory_refused("k", "read", role=name):
        raise NoPermissionError("NOPERM no permissions to access the 'k' key")
    with (
        pytest.raises(RedisConnectionError),
        memory_refused("k", "claim", role=name, count=metrics.ledger_error),
    ):
        raise RedisConnectionError("Connection refused")
    with pytest.raises(ValueError, match="not counted"), memory_refused("k", "read", role=name):
        raise ValueError("not Redis's: not counted")
    errors = "jetmesh_memory_errors_total"
    assert value(installed, errors, jetmesh_role=name, error_type="MemoryDenied") == 1.0
    assert value(installed, errors, jetmesh_role=name) == 1.0
    ledger = "jetmesh_ledger_errors_total"
    assert value(installed, ledger, jetmesh_role=name, error_type="ConnectionError") == 1.0


@pytest.mark.parametrize(
    ("env", "pushes"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "otlp"}, True),
    ],
)
def test_otlp_is_on_when_an_endpoint_is_set_and_not_turned_off(
    env: dict[str, str], pushes: bool
) -> None:
    assert metrics.otlp_configured(env) is pushes


# -- against real servers ------------------------------------------------------------------


@pytest.mark.integration
async def test_a_key_outside_the_roles_redis_user_is_a_memory_error(
    installed: metrics.Installed, redis_server: RedisServer
) -> None:
    """A Redis user limited to its own keys (as ``jetmesh up`` makes one per role) reads
    another's: Redis answers NOPERM, the memory raises MemoryDenied, and the role's
    memory errors count it."""
    name = role()
    user, password = f"u{uuid4().hex[:8]}", uuid4().hex
    admin = Redis.from_url(redis_server.url)
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=[f"{name}:*"], commands=["+@all"]
    )
    limited = Redis.from_url(redis_server.url, username=user, password=password)
    try:
        memory = WorkingMemory(limited, "elsewhere", "wf1", name)
        with pytest.raises(MemoryDenied):
            await memory.get("draft", str)
    finally:
        await limited.aclose()
        await admin.acl_deluser(user)
        await admin.aclose()
    errors = "jetmesh_memory_errors_total"
    assert value(installed, errors, jetmesh_role=name, error_type="MemoryDenied") == 1.0


@pytest.mark.integration
async def test_an_unreachable_redis_is_a_ledger_error(installed: metrics.Installed) -> None:
    name = role()
    nowhere = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1.0)
    try:
        ledger = StepLedger(nowhere, "t", ttl_s=60)
        with pytest.raises(RedisConnectionError):
            await ledger.journaled("wf1", name, "step-1")
    finally:
        await nowhere.aclose()
    errors = "jetmesh_ledger_errors_total"
    assert value(installed, errors, jetmesh_role=name, error_type="ConnectionError") == 1.0
    assert value(installed, "jetmesh_memory_errors_total", jetmesh_role=name) == 0.0
