"""Metrics on the health port: a ``jetmesh run`` process handles tasks that complete, are
refused (forged, or of a type it has no handler for), fail until they run out of deliveries,
and call the model; its ``/metrics``, scraped over HTTP and parsed with prometheus_client's
parser, counts exactly those, by role, outcome, reason, caller, tenant and model."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jetmesh import CallFailed
from jetmesh.embedded import free_port
from jetmesh.models import PriceTable
from jetmesh.processes import settings_env
from jetmesh.telemetry.metrics import CONTENT_TYPE
from tests.harness.mesh import REPO_ROOT, WAIT_S, Mesh
from tests.harness.metered_agents import METERED, Ask, Boom, Done, Job, Overreach, Refuse

pytestmark = pytest.mark.integration

MODEL = "offline-deterministic/templates-v1"
PRICES = f'[models."{MODEL}"]\ninput = 1000\noutput = 2000\n'
"""Dollars per million tokens: a tenth of a cent a token in, two tenths out."""

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """The status, headers (lower-cased names) and body of ``method path``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: prometheus\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers, body.decode()


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= got)


def by(samples: Samples, name: str, label: str, **labels: str) -> dict[str, float]:
    """``name``'s samples (with ``labels``) added up by the value of ``label``."""
    out: dict[str, float] = {}
    want = set(labels.items())
    for (n, got), value in samples.items():
        if n == name and want <= got:
            key = dict(got)[label]
            out[key] = out.get(key, 0.0) + value
    return out


@pytest.fixture
def metered_process(mesh: Mesh, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``jetmesh run tests.harness.metered_agents:agent --health-port <port>`` on the mesh's
    settings (two deliveries a task, a short backoff, a price table for the offline model);
    its port and log."""
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    mesh.configure(model_prices_file=prices, max_deliver=2, retry_backoff_s=(0.1,))
    port = free_port()
    log = tmp_path / "metered.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jetmesh.cli",
                "run",
                "tests.harness.metered_agents:agent",
                "--health-port",
                str(port),
            ],
            stdout=out,
            stderr=out,
            env={**settings_env(mesh.settings), "OTEL_SERVICE_NAME": ""},
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def wait_ready(port: int, log: Path) -> None:
    give_up = time.monotonic() + WAIT_S
    while time.monotonic() < give_up:
        try:
            if (await http_get(port, "/readyz"))[0] == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    text = await asyncio.to_thread(log.read_text)
    raise AssertionError(f"never ready:\n{text}")


async def test_metrics_count_what_the_process_was_sent(
    mesh: Mesh, metered_process: tuple[int, Path]
) -> None:
    port, log = metered_process
    await wait_ready(port, log)
    client = await mesh.ingress()

    for n in range(3):
        done = await client.request(METERED, Job(n), token=mesh.token("alice"), returns=Done)
        assert done.id == n
    asked = await client.request(
        METERED,
        Ask("a long thread about invoices and refunds"),
        token=mesh.token("carol", tenant="initech"),
        returns=Done,
    )
    assert asked.model == MODEL
    assert asked.tokens_in > 0
    assert asked.tokens_out > 0
    with pytest.raises(CallFailed):
        await client.request(
            METERED, Boom(1), token=mesh.token("bob", tenant="globex"), returns=Done
        )

    for unwanted in (Refuse(1), Overreach(2)):
        with pytest.raises(CallFailed):
            await client.request(METERED, unwanted, token=mesh.token("dave"), returns=Done)

    attacker = await mesh.attacker()
    token = mesh.token("mallory", tenant="acme")
    forged = mesh.seal(Job(99), to=METERED, token=token)
    await attacker.publish(
        mesh.subjects.task(METERED), forged.data.replace(b'"id":99', b'"id":98'), forged.headers
    )
    unknown = mesh.seal(Job(97), to=METERED, token=token, type_="test.NoSuchType/1")
    await attacker.publish(mesh.subjects.task(METERED), unknown.data, unknown.headers)

    role = {"jetmesh_role": METERED}
    durations = "jetmesh_task_duration_seconds_count"
    want_outcomes = {
        "completed": 4.0,
        "refused": 2.0,
        "retried": 1.0,
        "dead-lettered": 1.0,
        "failed": 1.0,
        "denied": 1.0,
    }
    give_up = time.monotonic() + WAIT_S
    while True:
        status, headers, text = await http_get(port, "/metrics")
        samples = parse(text)
        outcomes = by(samples, durations, "jetmesh_outcome", **role)
        if outcomes == want_outcomes or time.monotonic() > give_up:
            break
        await asyncio.sleep(0.1)

    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert outcomes == want_outcomes, log.read_text()
    assert total(samples, "jetmesh_task_redeliveries_total", **role) == 1.0
    assert total(samples, "jetmesh_tasks_in_flight", **role) == 0.0
    assert by(samples, "jetmesh_refusals_total", "jetmesh_reason", **role) == {
        "bad-signature": 1.0,
        "schema-violation": 1.0,
    }
    assert by(samples, "jetmesh_dead_letters_total", "jetmesh_reason", **role) == {
        "bad-signature": 1.0,
        "schema-violation": 1.0,
        "max-deliveries": 1.0,
        "rejected-by-handler": 1.0,
        "scope-denied": 1.0,
    }
    # every completed task's duration is in a bucket at or under +Inf, and took some time
    assert total(samples, "jetmesh_task_duration_seconds_bucket", le="+Inf", **role) == 10.0
    assert total(samples, "jetmesh_task_duration_seconds_sum", **role) > 0.0

    call = {
        **role,
        "jetmesh_caller": "carol",
        "jetmesh_tenant": "initech",
        "gen_ai_request_model": MODEL,
    }
    tokens = "gen_ai_client_token_usage"
    for kind, used in (("input", asked.tokens_in), ("output", asked.tokens_out)):
        token_labels = {**call, "gen_ai_token_type": kind, "gen_ai_operation_name": "chat"}
        assert total(samples, f"{tokens}_count", **token_labels) == 1.0
        assert total(samples, f"{tokens}_sum", **token_labels) == float(used)
    assert by(samples, f"{tokens}_count", "jetmesh_caller") == {"carol": 2.0}, "one call"
    cost = PriceTable.load(Path(mesh.settings.model_prices_file or "")).cost(
        MODEL, asked.tokens_in, asked.tokens_out
    )
    assert cost is not None
    assert cost > 0
    assert total(samples, "jetmesh_model_cost_USD_total", **call) == pytest.approx(cost)
    assert by(samples, "jetmesh_model_cost_USD_total", "jetmesh_tenant") == {
        "initech": pytest.approx(cost)
    }
    info = by(samples, "target_info", "service_name")
    assert info == {METERED: 1.0}, "service.name is the process's roles"

    # the rest of the port is as before
    assert (await http_get(port, "/metrics", method="POST"))[0] == 405
    assert (await http_get(port, "/metrics/more"))[0] == 404
    head = await http_get(port, "/metrics", method="HEAD")
    assert head[0] == 200
    assert head[2] == "", "HEAD: no body"
    assert (await http_get(port, "/healthz"))[0] == 200
    assert "/metrics" in log.read_text()
