"""The policy file: validation with clear errors, derived permissions, effective scopes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from jetmesh.cli.app import app
from jetmesh.policy import (
    PolicyError,
    default_policy,
    effective_scopes,
    load_policy,
    mesh_policy,
    parse_policy,
    role_permissions,
)
from jetmesh.settings import MeshSettings

SUPPORT = Path(__file__).parents[2] / "deploy" / "policy" / "support.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value.problems


def test_support_policy_loads() -> None:
    policy = load_policy(SUPPORT)
    assert policy.agents == [
        "billing", "critic", "escalation", "kb", "product", "technical", "toolgate", "triage",
    ]  # fmt: skip
    assert policy.roles["billing"].scopes == {"refund:write"}
    assert policy.roles["kb"].scopes == {"kb:read"}
    assert [r for r, g in policy.roles.items() if "refund:write" in g.scopes] == ["billing"]
    assert policy.roles["billing"].irreversible_tools == {"refund"}
    assert policy.callers("kb") == {"billing", "technical", "product"}
    assert policy.roles["cli"].ingress


def test_unknown_callee_names_file_role_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, '[roles.triage]\ncalls = ["biling"]\n')
    assert problems(path) == [f"{path}: roles.triage.calls: 'biling' is not a declared role"]


def test_bad_scope_and_unknown_field(tmp_path: Path) -> None:
    path = write(tmp_path, '[roles.kb]\nscopes = ["KB READ"]\nscope = ["kb:read"]\n')
    found = problems(path)
    assert any(p.startswith(f"{path}: roles.kb.scopes.") and "is not a scope" in p for p in found)
    assert f"{path}: roles.kb.scope: unknown field (a typo?)" in found


def test_tool_needs_a_granted_scope(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[roles.billing]\nscopes = ["kb:read"]\n'
        'tools.refund = { scope = "refund:write", irreversible = true }\n',
    )
    (problem,) = problems(path)
    assert problem == (
        f"{path}: roles.billing: tool 'refund' needs scope 'refund:write', "
        "which the role is not granted"
    )


def test_bad_depth_role_name_and_subject(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'max_delegation_depth = 0\n[roles."bad.name"]\n[roles.ok]\npublish = ["a.>.b"]\n',
    )
    found = problems(path)
    assert any(p.startswith(f"{path}: max_delegation_depth:") for p in found)
    bad_name = "'bad.name' is not a name (1-64 of A-Z a-z 0-9 _ -)"
    assert f'{path}: roles."bad.name": {bad_name}' in found
    assert any(p.startswith(f"{path}: roles.ok.publish.0:") for p in found)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    (problem,) = problems(write(tmp_path, "[roles.kb\n"))
    assert "not valid TOML" in problem
    (problem,) = problems(tmp_path / "absent.toml")
    assert "cannot read" in problem


def test_no_roles() -> None:
    with pytest.raises(PolicyError, match="roles: Field required"):
        parse_policy({})


def test_derived_subjects_and_keys() -> None:
    policy = load_policy(SUPPORT)
    s = MeshSettings(subject_prefix="acme", tasks_stream="T")
    kb = role_permissions(policy, "kb", s)
    assert kb.consume == "acme.agent.kb.task"
    assert kb.consumers == (("T", "kb"), ("T_ADVISORIES", "kb"))
    assert [p for p in kb.publish if p.endswith(".task")] == ["acme.agent.toolgate.task"]
    assert {f"acme.agent.{r}.reply.*" for r in ("billing", "technical", "product")} <= set(
        kb.publish
    )
    assert "acme.agent.triage.reply.*" not in kb.publish
    assert "acme.dlq.kb" in kb.publish
    assert "$JS.API.CONSUMER.MSG.NEXT.T.kb" in kb.publish
    assert "$JS.ACK.T.kb.>" in kb.publish
    assert not any("CREATE" in p or p.startswith("$JS.API.STREAM.CREATE") for p in kb.publish)
    assert kb.subscribe == ("acme.agent.kb.reply.*", "_INBOX.kb.>")
    assert kb.redis_keys[:4] == (
        "acme:wf:*:kb:*", "acme:conv:*:kb:*", "acme:result:*:kb:*", "acme:lease:*:kb:*",
    )  # fmt: skip
    assert {"acme:journal:kb:*", "acme:once:kb:*", "acme:wait:kb:*"} <= set(kb.redis_keys)
    assert all(":kb:" in pattern for pattern in kb.redis_keys), "no key shared with another role"
    triage = role_permissions(policy, "triage", s)
    assert "acme.agent.billing.task" in triage.publish
    assert "acme.agent.kb.task" not in triage.publish
    cli = role_permissions(policy, "cli", s)
    assert cli.consume is None
    assert cli.consumers == ()
    assert cli.redis_keys == ()
    assert "acme.agent.triage.task" in cli.publish
    assert "acme.dlq.cli" in cli.publish, "a reply the ingress refuses is dead-lettered"


def test_effective_scopes_only_narrow() -> None:
    caller = {"kb:read", "refund:write"}
    assert effective_scopes(caller, {"kb:read"}) == {"kb:read"}
    assert effective_scopes({"kb:read"}, {"kb:read", "refund:write"}) == {"kb:read"}
    assert effective_scopes(caller, caller, {"refund:write"}, {"refund:write", "x:y"}) == {
        "refund:write"
    }
    assert effective_scopes(caller, caller, set()) == frozenset()
    assert effective_scopes(caller, caller) == caller
    assert effective_scopes([], caller) == frozenset()


def test_cli_check() -> None:
    result = CliRunner().invoke(app, ["policy", "check", str(SUPPORT)])
    assert result.exit_code == 0, result.output
    assert "billing (agent)" in result.output
    assert "consumes   mesh.agent.kb.task" in result.output
    assert "ok: 9 roles" in result.output


def test_cli_check_reports_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[roles.triage]\ncalls = ["nobody"]\n')
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert "roles.triage.calls: 'nobody' is not a declared role" in result.output


def test_default_policy_covers_the_demo_roles() -> None:
    from jetmesh.cli.demo import ROLES

    policy = default_policy()
    assert set(policy.agents) == {*ROLES, "toolgate"}
    assert policy.roles["cli"].ingress
    assert policy.roles["cli"].calls == {"triage", "orchestrator"}
    with_tools = {name for name, grant in policy.roles.items() if grant.tools}
    assert with_tools == {"billing", "kb", "escalation", "researcher"}
    assert policy.callers("toolgate") == with_tools
    assert not policy.roles["toolgate"].tools
    assert mesh_policy(None) == policy


def test_support_policy_is_the_defaults_support_roles() -> None:
    support, default = load_policy(SUPPORT), default_policy()
    for name, grant in support.roles.items():
        if name == "cli":
            assert grant.calls <= default.roles["cli"].calls
            continue
        assert grant.calls == default.roles[name].calls, name
        assert grant.scopes <= default.roles[name].scopes, name
        assert grant.tools == default.roles[name].tools, name
        assert grant.redis_keys == default.roles[name].redis_keys, name


def test_extra_redis_keys_are_granted(tmp_path: Path) -> None:
    policy, settings = default_policy(), MeshSettings()
    toolgate = role_permissions(policy, "toolgate", settings)
    assert toolgate.redis_keys[-1] == "support-desk:*"
    for role in ("billing", "escalation"):  # they reach the desk only through toolgate
        assert not any(
            k.startswith("support-desk")
            for k in role_permissions(policy, role, settings).redis_keys
        )
    bad = write(tmp_path, '[roles.a]\nredis_keys = ["has space", "~x"]\n')
    found = problems(bad)
    assert len(found) == 2
    assert all("is not a Redis key pattern" in p for p in found)


def test_signal_senders_must_be_declared_roles(tmp_path: Path) -> None:
    path = tmp_path / "senders.toml"
    path.write_text('[roles.approver]\nsignal_senders = ["ghost"]\n')
    with pytest.raises(PolicyError, match="signal_senders: 'ghost' is not a declared role"):
        load_policy(path)
