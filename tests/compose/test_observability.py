"""compose/'s observability stack, checked from its files (no Docker engine here): the
OpenTelemetry Collector's configuration is whole and its endpoints are services of
compose.yaml on ports they listen on; every agent sends its spans to the collector and
serves /metrics where Prometheus scrapes it; the Grafana dashboard asks its provisioned
Prometheus for the mesh's own metric names only, as the OpenTelemetry SDK's Prometheus
exporter writes them. Each checker is also shown finding what it looks for in a broken
copy."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from tests.compose.conftest import COMPOSE_DIR, load_compose
from tests.compose.test_compose_file import AGENT_TARGETS, HEALTH_PORT

COLLECTOR = COMPOSE_DIR / "otel" / "collector.yaml"
PROMETHEUS = COMPOSE_DIR / "prometheus" / "prometheus.yml"
GRAFANA = COMPOSE_DIR / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "jetmesh.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
COLLECTOR_SERVICE = "otel-collector"
OTLP_HTTP = f"http://{COLLECTOR_SERVICE}:4318"

FIXED: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("jetmesh.task.duration", "histogram", "s", ("jetmesh.role", "jetmesh.outcome")),
    ("jetmesh.tasks.in_flight", "up_down_counter", "", ("jetmesh.role",)),
    ("jetmesh.task.redeliveries", "counter", "", ("jetmesh.role",)),
    ("jetmesh.dead_letters", "counter", "", ("jetmesh.role", "jetmesh.reason")),
    ("jetmesh.refusals", "counter", "", ("jetmesh.role", "jetmesh.reason")),
    ("jetmesh.consumer.lag", "gauge", "{message}", ("jetmesh.role",)),
    (
        "gen_ai.client.token.usage",
        "histogram",
        "{token}",
        (
            "gen_ai.token.type",
            "gen_ai.request.model",
            "gen_ai.operation.name",
            "jetmesh.role",
            "jetmesh.caller",
            "jetmesh.tenant",
        ),
    ),
    (
        "jetmesh.model.cost",
        "counter",
        "USD",
        ("jetmesh.role", "jetmesh.caller", "jetmesh.tenant", "gen_ai.request.model"),
    ),
    ("jetmesh.memory.errors", "counter", "", ("jetmesh.role", "error.type")),
    ("jetmesh.ledger.errors", "counter", "", ("jetmesh.role", "error.type")),
]
"""The mesh's metrics (OpenTelemetry name, instrument, unit, attributes): the fixed names
of docs/observability.md, which the runtime records and the dashboard queries."""

PROMETHEUS_NAMES = {
    "jetmesh_task_duration_seconds",
    "jetmesh_tasks_in_flight",
    "jetmesh_task_redeliveries_total",
    "jetmesh_dead_letters_total",
    "jetmesh_refusals_total",
    "jetmesh_consumer_lag",
    "gen_ai_client_token_usage",
    "jetmesh_model_cost_USD_total",
    "jetmesh_memory_errors_total",
    "jetmesh_ledger_errors_total",
}
"""The same, as docs/observability.md names them in Prometheus (histograms: the family)."""


def load_yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


# -- what the exporter writes ------------------------------------------------------------------


def exported() -> tuple[set[str], set[str]]:
    """The sample names and label names the OpenTelemetry SDK's Prometheus exporter writes
    for :data:`FIXED`, each instrument recorded once (on a registry of the test's own)."""
    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(
        registry=registry, disable_target_info=True, scope_info_enabled=False
    )
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("jetmesh")
    for name, kind, unit, attributes in FIXED:
        labels = {a: "x" for a in attributes}
        if kind == "histogram":
            meter.create_histogram(name, unit=unit).record(1.0, labels)
        elif kind == "counter":
            meter.create_counter(name, unit=unit).add(1, labels)
        elif kind == "up_down_counter":
            meter.create_up_down_counter(name, unit=unit).add(1, labels)
        else:

            def observe(
                _options: CallbackOptions, labels: dict[str, str] = labels
            ) -> Iterator[Observation]:
                yield Observation(1, labels)

            meter.create_observable_gauge(name, callbacks=[observe], unit=unit)
    text = generate_latest(registry).decode()
    provider.shutdown()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    names = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in samples}
    labels = {label for line in samples for label in re.findall(r"[{,](\w+)=", line)}
    return names, labels


@pytest.fixture(scope="module")
def exporter_names() -> tuple[set[str], set[str]]:
    return exported()


def test_the_fixed_names_are_what_the_exporter_writes(
    exporter_names: tuple[set[str], set[str]],
) -> None:
    names, labels = exporter_names
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}
    assert families == PROMETHEUS_NAMES
    assert {"jetmesh_task_duration_seconds_bucket", "gen_ai_client_token_usage_sum"} <= names
    assert {"jetmesh_role", "jetmesh_outcome", "gen_ai_request_model", "le"} <= labels


# -- the collector -----------------------------------------------------------------------------


def listening_ports(service: dict[str, Any]) -> set[int]:
    """The container ports a compose service listens on: ``expose``, the container side of
    ``ports``, and the health port of a ``jetmesh run`` command."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        ports.add(int(str(mapping).split(":")[-1].split("/")[0]))
    command = service.get("command") or []
    if isinstance(command, list) and "--health-port" in command:
        ports.add(int(command[command.index("--health-port") + 1]))
    return ports


def host_port(endpoint: str) -> tuple[str, int]:
    """``host:port`` of an endpoint, with or without a scheme and path."""
    match = re.fullmatch(r"(?:\w+://)?([\w.-]+):(\d+)(?:/.*)?", endpoint)
    assert match, endpoint
    return match.group(1), int(match.group(2))


def reaches(compose: dict[str, Any], endpoint: str, listener: str) -> list[str]:
    """Problems with ``endpoint`` as seen from service ``listener``: an address it listens
    on (``0.0.0.0:port``) must be one of its ports; another host, a service with that port."""
    host, port = host_port(endpoint)
    services = compose["services"]
    target = listener if host == "0.0.0.0" else host
    if target not in services:
        return [f"{endpoint}: no service {target}"]
    if port not in listening_ports(services[target]):
        return [f"{endpoint}: {target} does not listen on {port}"]
    return []


def pipeline_problems(config: dict[str, Any]) -> list[str]:
    """Pipelines that name a component the configuration does not define, lack receivers
    or exporters, or do not batch; extensions not defined."""
    problems: list[str] = []
    service = config.get("service", {})
    for extension in service.get("extensions", []):
        if extension not in (config.get("extensions") or {}):
            problems.append(f"extension {extension} not defined")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("no pipelines")
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            problems += [
                f"pipeline {name}: {kind[:-1]} {component} not defined"
                for component in pipeline.get(kind, [])
                if component not in (config.get(kind) or {})
            ]
        problems += [
            f"pipeline {name}: no {k}" for k in ("receivers", "exporters") if not pipeline.get(k)
        ]
        if "batch" not in pipeline.get("processors", []):
            problems.append(f"pipeline {name}: no batch processor")
    return problems


def collector_problems(config: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """What is wrong with the collector's configuration; empty when nothing is."""
    problems = pipeline_problems(config)
    protocols = (config.get("receivers") or {}).get("otlp", {}).get("protocols", {})
    for protocol, port in (("grpc", 4317), ("http", 4318)):
        endpoint = (protocols.get(protocol) or {}).get("endpoint", "")
        if endpoint != f"0.0.0.0:{port}":
            problems.append(f"otlp {protocol} receiver on {endpoint!r}, not 0.0.0.0:{port}")
        problems += reaches(compose, endpoint or f"0.0.0.0:{port}", COLLECTOR_SERVICE)
    for name, exporter in (config.get("exporters") or {}).items():
        endpoint = (exporter or {}).get("endpoint")
        if endpoint:
            problems += [
                f"exporter {name}: {p}" for p in reaches(compose, endpoint, COLLECTOR_SERVICE)
            ]
    return problems


def test_the_collector_configuration_is_whole_and_reaches_its_services() -> None:
    config, compose = load_yaml(COLLECTOR), load_compose()
    assert collector_problems(config, compose) == []
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert host_port(config["exporters"]["otlp/jaeger"]["endpoint"]) == ("jaeger", 4317)
    jaeger = compose["services"]["jaeger"]
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    collector = compose["services"][COLLECTOR_SERVICE]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")
    [config_arg] = [a for a in collector["command"] if a.startswith("--config=")]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in collector["volumes"]}
    assert mounted[config_arg.removeprefix("--config=")] == "./otel/collector.yaml"


def test_the_collector_checker_finds_what_is_missing() -> None:
    config, compose = load_yaml(COLLECTOR), load_compose()
    broken = copy.deepcopy(config)
    broken["service"]["pipelines"]["traces"]["exporters"] = ["otlp/zipkin"]
    broken["service"]["pipelines"]["metrics"]["processors"] = ["memory_limiter"]
    broken["exporters"]["otlp/jaeger"]["endpoint"] = "jaeger:14250"
    broken["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "localhost:4318"
    del broken["extensions"]
    problems = collector_problems(broken, compose)
    assert "pipeline traces: exporter otlp/zipkin not defined" in problems
    assert "pipeline metrics: no batch processor" in problems
    assert "exporter otlp/jaeger: jaeger:14250: jaeger does not listen on 14250" in problems
    assert any(p.startswith("otlp http receiver on 'localhost:4318'") for p in problems)
    assert "extension health_check not defined" in problems
    gone = copy.deepcopy(compose)
    del gone["services"]["jaeger"]
    assert "exporter otlp/jaeger: jaeger:4317: no service jaeger" in collector_problems(
        config, gone
    )


# -- agents and Prometheus ---------------------------------------------------------------------


def test_every_agent_sends_spans_to_the_collector_and_serves_metrics() -> None:
    compose = load_compose()
    services = compose["services"]
    for role in AGENT_TARGETS:
        env = services[role]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == OTLP_HTTP, role
        assert env["OTEL_METRICS_EXPORTER"] == "none", role  # scraped, not pushed twice
        assert env["JETMESH_HEALTH_HOST"] == "0.0.0.0", role
        assert int(HEALTH_PORT) in listening_ports(services[role]), role
    assert reaches(compose, OTLP_HTTP, COLLECTOR_SERVICE) == []


def scrape_targets(config: dict[str, Any]) -> dict[str, list[str]]:
    """Each scrape job's static targets."""
    return {
        job["job_name"]: [t for group in job.get("static_configs", []) for t in group["targets"]]
        for job in config["scrape_configs"]
    }


def scrape_problems(config: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """Targets that are not a compose service listening on that port, and agents that
    nobody scrapes."""
    problems: list[str] = []
    targets = scrape_targets(config)
    for job, listed in targets.items():
        for target in listed:
            problems += [f"{job}: {p}" for p in reaches(compose, target, "prometheus")]
    scraped = {host_port(t)[0] for listed in targets.values() for t in listed}
    problems += [f"{role}: not scraped" for role in AGENT_TARGETS if role not in scraped]
    return problems


def test_prometheus_scrapes_every_agent_and_the_collector() -> None:
    config, compose = load_yaml(PROMETHEUS), load_compose()
    assert scrape_problems(config, compose) == []
    targets = scrape_targets(config)
    assert sorted(targets["agents"]) == sorted(f"{r}:{HEALTH_PORT}" for r in AGENT_TARGETS)
    assert {f"{COLLECTOR_SERVICE}:8889", f"{COLLECTOR_SERVICE}:8888"} <= set(
        targets["otel-collector"]
    )
    collector = load_yaml(COLLECTOR)
    assert host_port(collector["exporters"]["prometheus"]["endpoint"])[1] == 8889
    prometheus = compose["services"]["prometheus"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    [config_arg] = [a for a in prometheus["command"] if a.startswith("--config.file=")]
    assert mounted[config_arg.removeprefix("--config.file=")] == "./prometheus/prometheus.yml"


def test_the_scrape_checker_finds_wrong_targets() -> None:
    config, compose = load_yaml(PROMETHEUS), load_compose()
    broken = copy.deepcopy(config)
    broken["scrape_configs"][0]["static_configs"][0]["targets"] = ["triage:9100", "ghost:8080"]
    problems = scrape_problems(broken, compose)
    assert "agents: triage:9100: triage does not listen on 9100" in problems
    assert "agents: ghost:8080: no service ghost" in problems
    assert "billing: not scraped" in problems


# -- Grafana -----------------------------------------------------------------------------------

PROMQL_FUNCTIONS_AND_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression uses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels: set[str] = set()
    for clause in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text
    ):
        labels |= {label.strip() for label in clause.split(",") if label.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        function = text[m.end() :].lstrip().startswith("(")
        if not function and m.group(0).lower() not in PROMQL_FUNCTIONS_AND_WORDS:
            names.add(m.group(0))
    return names, labels


def test_promql_names_reads_names_and_labels() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, jetmesh_role) (rate(jetmesh_task_duration"
        '_seconds_bucket{jetmesh_role=~"$role", jetmesh_outcome="a{b}"}[$__rate_interval])))'
        " / on (jetmesh_role) jetmesh_tasks_in_flight"
    )
    assert promql_names(expr) == (
        {"jetmesh_task_duration_seconds_bucket", "jetmesh_tasks_in_flight"},
        {"le", "jetmesh_role", "jetmesh_outcome"},
    )


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"{panel['title']}/{target.get('refId')}", target.get("expr", "")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text)
            assert inner, text
            yield f"${variable['name']}", f'{inner.group(1)}{{{inner.group(2)}!=""}}'


def panel_problems(panel: dict[str, Any], datasource_uid: str) -> list[str]:
    """A panel's layout, targets and data source; legends that name an ungrouped label."""
    title = panel.get("title", "?")
    problems: list[str] = []
    if not {"x", "y", "w", "h"} <= set(panel.get("gridPos", {})):
        problems.append(f"{title}: no gridPos")
    if panel.get("type") == "row":
        return problems
    targets = panel.get("targets") or []
    if not targets:
        problems.append(f"{title}: no targets")
    refs = [t.get("refId") for t in targets]
    if len(refs) != len(set(refs)) or None in refs:
        problems.append(f"{title}: refIds missing or repeated")
    for source in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
        if (source or {}).get("uid") != datasource_uid:
            problems.append(f"{title}: data source {source}")
    for target in targets:
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        grouped = promql_names(target.get("expr", ""))[1]
        if not legend <= grouped:
            problems.append(f"{title}: legend {sorted(legend - grouped)} not grouped by")
    return problems


def dashboard_problems(
    dashboard: dict[str, Any], datasource_uid: str, names: set[str], labels: set[str]
) -> list[str]:
    """What is wrong with ``dashboard``: Grafana's schema basics, the data source, and
    PromQL metric or label names that are not the mesh's."""
    problems = [
        f"no {k}" for k in ("uid", "title", "schemaVersion", "panels") if k not in dashboard
    ]
    panels = dashboard.get("panels", [])
    if len({p.get("id") for p in panels}) != len(panels):
        problems.append("panel ids repeat")
    for panel in panels:
        problems += panel_problems(panel, datasource_uid)
    for where, expr in queries(dashboard):
        used, used_labels = promql_names(expr)
        if not used:
            problems.append(f"{where}: no metric")
        problems += [f"{where}: unknown metric {n}" for n in sorted(used - names)]
        problems += [f"{where}: unknown label {n}" for n in sorted(used_labels - labels)]
    return problems


def provisioned_prometheus() -> str:
    [source] = [s for s in load_yaml(DATASOURCES)["datasources"] if s["type"] == "prometheus"]
    host, port = host_port(source["url"])
    assert (host, port) == ("prometheus", 9090)
    uid: str = source["uid"]
    return uid


def test_the_dashboard_asks_the_provisioned_prometheus_for_the_meshs_metrics(
    exporter_names: tuple[set[str], set[str]],
) -> None:
    names, labels = exporter_names
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard_problems(dashboard, provisioned_prometheus(), names, labels) == []
    used = {n for _, expr in queries(dashboard) for n in promql_names(expr)[0]}
    families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
    assert families == PROMETHEUS_NAMES  # every metric of the mesh on the dashboard
    exprs = [expr for _, expr in queries(dashboard)]
    for quantile in ("0.5", "0.95", "0.99"):  # per-role latency
        assert any(
            f"histogram_quantile({quantile}," in e and "jetmesh_task_duration_seconds_bucket" in e
            for e in exprs
        ), quantile
    for by in ("jetmesh_role", "jetmesh_tenant", "gen_ai_request_model"):  # cost by each
        assert any("jetmesh_model_cost_USD_total" in e and by in e for e in exprs), by


def test_grafana_loads_the_dashboard_from_where_compose_mounts_it() -> None:
    grafana = load_compose()["services"]["grafana"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    [provider] = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert mounted["./grafana/dashboards"] == provider["options"]["path"]
    assert mounted["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    for service in ("grafana", "prometheus", "jaeger"):  # the UIs, on loopback only
        ports = load_compose()["services"][service]["ports"]
        assert all(str(p).startswith("127.0.0.1:") for p in ports), service


def test_the_dashboard_checker_finds_foreign_names_and_sources(
    exporter_names: tuple[set[str], set[str]],
) -> None:
    names, labels = exporter_names
    dashboard = json.loads(DASHBOARD.read_text())
    broken = copy.deepcopy(dashboard)
    panel = next(p for p in broken["panels"] if p["type"] != "row")
    panel["targets"][0]["expr"] = "sum by (pod) (rate(http_requests_total[5m]))"
    panel["targets"][0]["legendFormat"] = "{{instance}}"
    panel["datasource"] = {"type": "prometheus", "uid": "elsewhere"}
    other = next(p for p in broken["panels"][2:] if p["type"] != "row")
    other["targets"] = []
    problems = dashboard_problems(broken, provisioned_prometheus(), names, labels)
    title = panel["title"]
    assert f"{title}/A: unknown metric http_requests_total" in problems
    assert f"{title}/A: unknown label pod" in problems
    assert f"{title}: legend ['instance'] not grouped by" in problems
    assert any(p.startswith(f"{title}: data source") for p in problems)
    assert f"{other['title']}: no targets" in problems
