"""Metrics pushed over OTLP/HTTP: a ``jetmesh run`` process with no health port and
``OTEL_EXPORTER_OTLP_ENDPOINT`` set sends its figures to a receiver in the test (decoding
each ``POST /v1/metrics`` on a ``loadtest.otlp_sink.OtlpHttpServer``), with the resource's
service.name; with ``OTEL_METRICS_EXPORTER=none`` it sends none."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from jetmesh.processes import settings_env
from loadtest.otlp_sink import OtlpHttpServer
from tests.harness.mesh import REPO_ROOT, WAIT_S, Mesh
from tests.harness.metered_agents import METERED, Done, Job

pytestmark = pytest.mark.integration

Point = tuple[str, frozenset[tuple[str, str]]]


def _attributes(pairs: Any) -> frozenset[tuple[str, str]]:
    return frozenset((kv.key, kv.value.string_value) for kv in pairs if isinstance(kv, KeyValue))


class MetricsReceiver(OtlpHttpServer):
    """Keeps the latest value of each point of each metric pushed to ``/v1/metrics``
    (cumulative: the latest is the total), and the service names it came from."""

    def __init__(self) -> None:
        super().__init__()
        self.points: dict[Point, float] = {}
        self.services: set[str] = set()
        self.exports = 0

    def received(self, path: str, body: bytes) -> bytes:
        if path == "/v1/metrics":
            self.add(ExportMetricsServiceRequest.FromString(body))
        return ExportMetricsServiceResponse().SerializeToString()

    def add(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            self.exports += 1
            for resource_metrics in request.resource_metrics:
                resource = dict(_attributes(resource_metrics.resource.attributes))
                self.services.add(resource.get("service.name", ""))
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        for point in metric.histogram.data_points:
                            key = (f"{metric.name}.count", _attributes(point.attributes))
                            self.points[key] = float(point.count)
                            self.points[(f"{metric.name}.sum", key[1])] = point.sum
                        for number in metric.sum.data_points:
                            value = number.as_double or float(number.as_int)
                            self.points[(metric.name, _attributes(number.attributes))] = value

    def value(self, name: str, **attributes: str) -> float:
        want = set(attributes.items())
        with self._lock:
            return sum(v for (n, got), v in self.points.items() if n == name and want <= got)


@pytest.fixture
def receiver() -> Iterator[MetricsReceiver]:
    with MetricsReceiver() as received:
        yield received


@contextmanager
def running(mesh: Mesh, log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``jetmesh run tests.harness.metered_agents:agent`` (no health port) with ``env``,
    killed on the way out if the test did not stop it."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jetmesh.cli", "run", "tests.harness.metered_agents:agent"],
            stdout=out,
            stderr=out,
            env={**settings_env(mesh.settings), **env},
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def until_ready(log: Path) -> None:
    give_up = time.monotonic() + WAIT_S
    while time.monotonic() < give_up:
        text = await asyncio.to_thread(log.read_text)
        if "ready: " in text:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never ready:\n{text}")


async def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(proc.wait, 30)


async def test_a_process_pushes_its_metrics_to_the_otlp_endpoint(
    mesh: Mesh, receiver: MetricsReceiver, tmp_path: Path
) -> None:
    log = tmp_path / "pushing.log"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_SERVICE_NAME": "metered-otlp",
    }
    with running(mesh, log, env) as proc:
        await until_ready(log)
        client = await mesh.ingress()
        for n in range(3):
            assert (await client.request(METERED, Job(n), token=mesh.token(), returns=Done)).id == n
        count = "jetmesh.task.duration.count"
        labels = {"jetmesh.role": METERED, "jetmesh.outcome": "completed"}
        give_up = time.monotonic() + WAIT_S
        while time.monotonic() < give_up:
            if receiver.value(count, **labels) >= 3:
                break
            await asyncio.sleep(0.1)
        assert receiver.value(count, **labels) == 3.0, log.read_text()
        assert receiver.value("jetmesh.task.duration.sum", **labels) > 0.0
        assert receiver.services == {"metered-otlp"}
        assert "/metrics" not in log.read_text(), "no health port: nothing served"
        assert await stop(proc) == 0, log.read_text()


async def test_otel_metrics_exporter_none_pushes_nothing(
    mesh: Mesh, receiver: MetricsReceiver, tmp_path: Path
) -> None:
    log = tmp_path / "silent.log"
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "100",
        "OTEL_METRICS_EXPORTER": "none",
    }
    with running(mesh, log, env) as proc:
        await until_ready(log)
        client = await mesh.ingress()
        assert (await client.request(METERED, Job(1), token=mesh.token(), returns=Done)).id == 1
        assert await stop(proc) == 0, log.read_text()  # a stop flushes what is pushed
        assert receiver.exports == 0
