"""The gateway's role in services/gateway/policy.toml, and the demo policy that includes it."""

from __future__ import annotations

from pathlib import Path

from jetmesh.policy import mesh_policy

HERE = Path(__file__).resolve().parents[3] / "services" / "gateway"


def test_the_demo_policy_has_the_gateway_as_an_ingress_calling_the_entry_roles() -> None:
    policy = mesh_policy(HERE / "demo.toml")
    gateway = policy.roles["gateway"]
    assert gateway.ingress
    assert sorted(gateway.calls) == ["orchestrator", "triage"]
    assert not gateway.scopes
    assert not gateway.redis_keys
