"""compose/compose.yaml as the compose specification and the policy want it: valid against
the compose-spec JSON Schema, a service per role of both meshes and the tool gateway, each
given its own secrets alone, health checks, restarts and a drain's grace period.

The schema is vendored: tests/compose/compose-spec.json is ``schema/compose-spec.json`` of
https://github.com/compose-spec/compose-spec at commit
170098ba07d9f53c383a41bfd4c5166b0a4529a6 (2026-06-23)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from jetmesh import MeshSettings
from jetmesh.policy import mesh_policy
from services import research, support
from tests.compose.conftest import COMPOSE_DIR, DEMO_POLICY, load_compose

SCHEMA = Path(__file__).with_name("compose-spec.json")
HEALTH_PORT = "8080"
AGENT_TARGETS = {
    **{role: f"services.support.{role}:agent" for role in support.ROLES},
    **support.PROCESSES,
    **{role: f"services.research.{role}:agent" for role in research.ROLES},
}
"""Every process of both meshes: its roles, and the tool gateway."""


def compose_files() -> list[Path]:
    return sorted([*COMPOSE_DIR.glob("*.yaml"), *COMPOSE_DIR.glob("*.yml")])


def schema_problems(document: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def seconds(duration: str) -> float:
    """A compose duration (``1m30s``, ``40s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def secret_sources(service: dict[str, Any]) -> list[str]:
    return [s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])]


def running_problems(role: str, target: str, service: dict[str, Any]) -> list[str]:
    """How ``role``'s service runs: its command, health check, restarts, grace period."""
    problems: list[str] = []
    command = service.get("command", [])
    if command[:3] != ["jetmesh", "run", target] or "--health-port" not in command:
        problems.append(f"{role}: command {command}")
    elif command[command.index("--health-port") + 1] != HEALTH_PORT:
        problems.append(f"{role}: health port {command}")
    test = " ".join(service.get("healthcheck", {}).get("test", []))
    if f"http://127.0.0.1:{HEALTH_PORT}/readyz" not in test or "python" not in test:
        problems.append(f"{role}: healthcheck {test!r}")
    if service.get("restart") not in ("always", "unless-stopped", "on-failure"):
        problems.append(f"{role}: restart {service.get('restart')!r}")
    drain = MeshSettings().drain_timeout_s
    if seconds(service.get("stop_grace_period", "10s")) < drain:
        problems.append(f"{role}: stop_grace_period shorter than a drain ({drain:g} s)")
    if service.get("depends_on", {}).get("init", {}).get("condition") != (
        "service_completed_successfully"
    ):
        problems.append(f"{role}: does not wait for init")
    if service.get("environment", {}).get("JETMESH_HEALTH_HOST") != "0.0.0.0":
        problems.append(f"{role}: health endpoints on loopback only")
    return problems


def secrets_problems(role: str, service: dict[str, Any]) -> list[str]:
    """``role``'s service mounts its own keys as its keys directory, and no other secret
    (the tool gateway: its tools' credentials too)."""
    problems: list[str] = []
    mounted = {
        s["source"]: s.get("target") for s in service.get("secrets", []) if isinstance(s, dict)
    }
    keys_dir = service.get("environment", {}).get("JETMESH_KEYS_DIR")
    if mounted.get(f"keys-{role}") != "keys" or keys_dir != "/run/secrets/keys":
        problems.append(f"{role}: its keys are not its JETMESH_KEYS_DIR")
    others = {s for s in secret_sources(service) if s != f"keys-{role}"}
    others -= {"tool-credentials"} if role in support.PROCESSES else set()
    if others:
        problems.append(f"{role}: mounts others' secrets {sorted(others)}")
    return problems


def agent_problems(compose: dict[str, Any]) -> list[str]:
    """What is wrong with the agent services of ``compose``; empty when nothing is."""
    problems: list[str] = []
    services: dict[str, Any] = compose["services"]
    for role, target in AGENT_TARGETS.items():
        if role not in services:
            problems.append(f"{role}: no service")
            continue
        problems += running_problems(role, target, services[role])
        problems += secrets_problems(role, services[role])
    for name, service in services.items():  # a role's keys go to that role alone
        owners = {s.removeprefix("keys-") for s in secret_sources(service) if s.startswith("keys-")}
        owners -= {"admin"} if name == "init" else {name}
        problems += [f"{name}: mounts keys-{owner}" for owner in sorted(owners)]
    return problems


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_valid_against_the_compose_spec(path: Path) -> None:
    assert schema_problems(load_compose(path)) == []


def test_the_schema_catches_what_is_not_compose() -> None:
    broken = load_compose()
    broken["services"]["billing"]["restart"] = ["unless-stopped"]
    broken["services"]["kb"]["depends_on"] = {"init": {"condition": "when-ready"}}
    problems = schema_problems(broken)
    assert any("'billing'" in p and "restart" in p for p in problems), problems
    assert any("'kb'" in p for p in problems), problems


def test_every_role_of_both_meshes_runs_as_itself() -> None:
    compose = load_compose()
    agents = set(mesh_policy(DEMO_POLICY).agents)
    assert agents == set(AGENT_TARGETS), "the demo's policy and the meshes' packages agree"
    assert agent_problems(compose) == []


def test_a_role_given_another_role_secrets_is_found() -> None:
    compose = load_compose()
    wrong = copy.deepcopy(compose)
    wrong["services"]["billing"]["secrets"] = [{"source": "keys-kb", "target": "keys"}]
    del wrong["services"]["writer"]["healthcheck"]
    del wrong["services"]["critic"]["restart"]
    wrong["services"]["kb"]["stop_grace_period"] = "5s"
    del wrong["services"]["reviewer"]
    problems = agent_problems(wrong)
    assert "billing: its keys are not its JETMESH_KEYS_DIR" in problems
    assert "billing: mounts others' secrets ['keys-kb']" in problems
    assert "billing: mounts keys-kb" in problems
    assert any(p.startswith("writer: healthcheck") for p in problems)
    assert "critic: restart None" in problems
    assert any(p.startswith("kb: stop_grace_period") for p in problems)
    assert "reviewer: no service" in problems


def test_init_provisions_three_replicas_as_the_admin() -> None:
    services = load_compose()["services"]
    init = services["init"]
    assert init["command"] == ["jetmesh", "admin", "provision"]
    assert init["environment"]["JETMESH_STREAM_REPLICAS"] == "3"
    assert init["secrets"] == [{"source": "keys-admin", "target": "keys"}]
    waits = {name: dep["condition"] for name, dep in init["depends_on"].items()}
    servers = {n for n in services if n.startswith(("nats-", "redis-", "sentinel-"))}
    assert waits == dict.fromkeys(servers, "service_healthy")
    for name in servers:
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name


def test_every_process_reaches_the_whole_cluster() -> None:
    services = load_compose()["services"]
    nats = sorted(n for n in services if n.startswith("nats-"))
    sentinels = sorted(n for n in services if n.startswith("sentinel-"))
    assert (len(nats), len(sentinels)) == (3, 3)
    for name in ["init", *AGENT_TARGETS]:
        env = services[name]["environment"]
        assert env["JETMESH_NATS_URL"].split(",") == [f"nats://{n}:4222" for n in nats]
        hosts = ",".join(f"{s}:26379" for s in sentinels)
        assert env["JETMESH_REDIS_URL"] == f"redis+sentinel://{hosts}/jetmesh/0"
        assert env["JETMESH_POLICY_FILE"] == "/app/services/demo/policy.toml"


def test_every_secret_is_a_file_jetmesh_admin_secrets_writes(deploy_secrets: Path) -> None:
    secrets = load_compose()["secrets"]
    for name, secret in secrets.items():
        relative = secret["file"].removeprefix("./secrets/")
        assert secret["file"] == f"./secrets/{relative}", name
        assert (deploy_secrets / relative).exists(), name
    roles = {name.removeprefix("keys-") for name in secrets if name.startswith("keys-")}
    assert roles == {*AGENT_TARGETS, "admin"}
    assert (deploy_secrets / "tools.toml").read_text().count("demo-") == 2
