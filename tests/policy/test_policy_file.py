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
    policy_of,
    role_permissions,
)
from jetmesh.policy.derive import discovery_listens
from jetmesh.settings import MeshSettings
from services import demo, research, support

SUPPORT = support.POLICY


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
    assert kb.subscribe == ("acme.agent.kb.reply.*", "_INBOX.kb.>", *discovery_listens("kb"))
    assert kb.responds
    assert not any(p.startswith("_INBOX") for p in kb.publish)
    assert [p for p in kb.publish if p.startswith("$SRV")] == ["$SRV.INFO.toolgate"]
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
    assert {"$SRV.PING", "$SRV.INFO", "$SRV.STATS"} <= set(cli.publish)
    assert not cli.responds
    assert not any(p.startswith("$SRV") for p in cli.subscribe)
    assert [p for p in triage.publish if p.startswith("$SRV")] == [
        f"$SRV.INFO.{callee}" for callee in sorted(policy.role("triage").calls)
    ], "only the cli asks every service; a role asks INFO of its callees (pre-flight)"


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
    result = CliRunner().invoke(app, ["policy", "check", str(SUPPORT), "--detail"])
    assert result.exit_code == 0, result.output
    assert "billing (agent)" in result.output
    assert "consumes   mesh.agent.kb.task" in result.output
    assert "ok: 9 roles" in result.output


def test_cli_check_lists_the_budgets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[roles.writer]\n"
        "[budgets.tenant.acme]\ntokens = 100000\ncost_usd = 5.0\n"
        "[budgets.caller.alice]\ntokens = 2000\nper = 60\n",
    )
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "budget caller alice: 2000 tokens per 60 s" in result.output
    assert "budget tenant acme: 100000 tokens, $5 per day" in result.output


def test_cli_check_reports_errors(tmp_path: Path) -> None:
    path = write(tmp_path, '[roles.triage]\ncalls = ["nobody"]\n')
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert "roles.triage.calls: 'nobody' is not a declared role" in result.output


def test_default_policy_holds_the_librarys_roles_alone() -> None:
    policy = default_policy()
    assert set(policy.roles) == {"cli", "toolgate"}
    assert policy.roles["cli"].ingress
    assert policy.roles["cli"].calls == frozenset()
    assert not policy.roles["toolgate"].tools
    assert policy.roles["toolgate"].redis_keys == ()
    assert mesh_policy(None) == policy


def test_demo_policy_is_both_meshes_over_the_librarys_roles() -> None:
    from services.demo.run import ROLES

    policy = load_policy(demo.POLICY)
    assert set(policy.agents) == set(ROLES)
    assert policy.roles["cli"].ingress
    assert policy.roles["cli"].calls == {"triage", "orchestrator"}
    with_tools = {name for name, grant in policy.roles.items() if grant.tools}
    assert with_tools == {"billing", "kb", "escalation", "researcher"}
    assert policy.callers("toolgate") == with_tools
    assert not policy.roles["toolgate"].tools
    assert policy.roles["toolgate"].redis_keys == ("support-desk:*",)
    assert policy.max_delegation_depth == 4
    assert mesh_policy(demo.POLICY) == policy
    alone = load_policy(research.POLICY)
    assert set(alone.roles) == {
        "cli",
        "toolgate",
        "orchestrator",
        "researcher",
        "writer",
        "reviewer",
    }
    assert alone.roles["cli"].calls == {"orchestrator"}
    assert alone.roles["toolgate"].redis_keys == ()


def test_support_policy_is_the_demos_support_roles() -> None:
    mesh, both = load_policy(SUPPORT), load_policy(demo.POLICY)
    for name, grant in mesh.roles.items():
        if name == "cli":
            assert grant.calls <= both.roles["cli"].calls
            continue
        assert grant == both.roles[name], name


def test_a_file_adds_to_the_librarys_roles(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[roles.cli]\ncalls = ["worker"]\ningress = true\n'
        '[roles.toolgate]\nredis_keys = ["outside:*"]\n'
        '[roles.worker]\ncalls = ["toolgate"]\nscopes = ["doc:read"]\n'
        'tools.doc = { scope = "doc:read" }\n',
    )
    policy = load_policy(path)
    assert set(policy.roles) == {"cli", "toolgate", "worker"}
    assert policy.roles["cli"].calls == {"worker"}
    assert policy.roles["cli"].description == default_policy().roles["cli"].description
    assert policy.roles["toolgate"].redis_keys == ("outside:*",)
    assert policy.max_delegation_depth == 8  # no file sets it


def test_a_file_may_not_change_a_library_role(tmp_path: Path) -> None:
    path = write(tmp_path, "[roles.cli]\ningress = false\n[roles.toolgate]\n")
    assert problems(path) == [
        f"{path}: roles.cli.ingress: a library role; a file may add to its calls, scopes, "
        "tools, publish, consume, redis_keys, signal_senders, not change its ingress"
    ]


def test_includes_are_laid_in_order_each_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "policy.toml").write_text(
        'max_delegation_depth = 5\n[roles.cli]\ncalls = ["alpha"]\n[roles.alpha]\n'
    )
    (tmp_path / "b" / "policy.toml").write_text(
        'include = ["../a/policy.toml"]\nmax_delegation_depth = 3\n'
        '[roles.cli]\ncalls = ["beta"]\n[roles.beta]\ncalls = ["alpha"]\n'
    )
    top = write(tmp_path, 'include = ["a/policy.toml", "b/policy.toml"]\n')
    policy = load_policy(top)
    assert set(policy.roles) == {"cli", "toolgate", "alpha", "beta"}
    assert policy.roles["cli"].calls == {"alpha", "beta"}
    assert policy.max_delegation_depth == 3  # the smallest a file sets
    result = CliRunner().invoke(app, ["policy", "check", str(top)])
    assert result.exit_code == 0, result.output
    assert "ok: 4 roles" in result.output


def test_a_role_defined_in_two_files_names_both(tmp_path: Path) -> None:
    first = tmp_path / "first.toml"
    first.write_text("[roles.worker]\n")
    second = tmp_path / "second.toml"
    second.write_text('[roles.worker]\ncalls = ["toolgate"]\n')
    top = write(tmp_path, 'include = ["first.toml", "second.toml"]\n')
    assert problems(top) == [
        f"{second}: roles.worker: already defined in {first} (a role is defined in one file)"
    ]


def test_include_cycles_and_missing_files(tmp_path: Path) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text('include = ["two.toml"]\n')
    two.write_text('include = ["one.toml"]\n')
    (found,) = problems(one)
    assert found == f"{one}: include: includes itself ({one} -> {two} -> {one})"
    missing = write(tmp_path, 'include = ["nowhere.toml"]\n')
    (found,) = problems(missing)
    assert found.startswith(f"{tmp_path / 'nowhere.toml'}: cannot read")
    not_a_list = write(tmp_path, 'include = "one.toml"\n')
    assert problems(not_a_list) == [f"{not_a_list}: include: not a list of file paths"]


def test_problems_name_the_included_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles.kb]\nscope = ["kb:read"]\n')
    top = write(tmp_path, 'include = ["bad.toml"]\n')
    assert problems(top) == [f"{bad}: roles.kb.scope: unknown field (a typo?)"]


def test_extra_redis_keys_are_granted(tmp_path: Path) -> None:
    policy, settings = load_policy(SUPPORT), MeshSettings()
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


def test_a_running_process_sees_a_change_to_an_included_file(tmp_path: Path) -> None:
    (tmp_path / "mesh.toml").write_text('[roles.desk]\ndescription = "takes greetings"\n')
    top = write(tmp_path, 'include = ["mesh.toml"]\n[roles.cli]\ncalls = ["desk"]\n')
    first = policy_of(top)
    assert first is not None
    assert first.roles["desk"].calls == frozenset()
    assert policy_of(top) is first  # nothing changed: not read again
    (tmp_path / "mesh.toml").write_text(
        '[roles.desk]\ndescription = "takes greetings"\ncalls = ["writer"]\n[roles.writer]\n'
    )
    changed = policy_of(top)
    assert changed is not first
    assert changed is not None
    assert changed.roles["desk"].calls == frozenset({"writer"})
