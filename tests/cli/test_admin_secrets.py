"""``jetmesh admin secrets``: a deployment's secrets from the policy, a directory per role
holding its part alone, and servers started from the generated users files that let each
role in as itself."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jetmesh import ConfigError, KeyStore, MeshClient, MeshSettings
from jetmesh.addresses import Subjects
from jetmesh.cli import app
from jetmesh.deploy_secrets import write_deploy_secrets
from jetmesh.embedded import NatsServer, RedisServer
from jetmesh.identity.certificates import verify_certificate
from jetmesh.policy import mesh_policy, parse_policy, role_permissions
from jetmesh.processes import AgentProcess
from jetmesh.provision import certificate_subjects, provision
from tests.harness.agents import Plan, Report
from tests.harness.mesh import REPO_ROOT

POLICY_TOML = """\
[roles.cli]
calls = ["planner"]

[roles.planner]
calls = ["counter"]
scopes = ["plan:write"]

[roles.counter]
"""
"""cli -> planner -> counter, as the test harness's agents (tests.harness.agents)."""

AGENTS = ("counter", "planner", "toolgate")
"""The policy's agent roles (``toolgate`` is the library's); ``cli`` is an ingress."""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    return path


def secrets_cli(out: Path, *args: str, policy_env: Path | None = None) -> tuple[int, str]:
    """Run ``jetmesh admin secrets --out OUT ARGS`` in-process: (exit code, output)."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("JETMESH_")}
    env["JETMESH_STATE_DIR"] = str(out.parent / "unused-state")
    if policy_env is not None:
        env["JETMESH_POLICY_FILE"] = str(policy_env)
    result = CliRunner().invoke(app, ["admin", "secrets", "--out", str(out), *args], env=env)
    return result.exit_code, result.output


def files_under(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` by its relative path, with its text."""
    return {
        str(p.relative_to(directory)): p.read_text()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def role_files(role: str, root_kid: str, *, redis: bool = True) -> set[str]:
    wanted = {f"{role}.key", f"{role}.cert", f"roots/{root_kid}.pub", f"nats/{role}.nk"}
    return wanted | ({f"redis/{role}.pass"} if redis else set())


def test_layout_modes_and_certificates(tmp_path: Path, policy_file: Path) -> None:
    out = tmp_path / "secrets"
    code, output = secrets_cli(out, "--policy", str(policy_file))
    assert code == 0, output
    assert "4 roles and admin" in output, output

    store = KeyStore(out / "admin")
    (root_kid,) = store.roots()
    assert sorted(p.name for p in out.iterdir()) == sorted(["admin", "servers", "cli", *AGENTS])
    for role in AGENTS:
        assert set(files_under(out / role)) == role_files(role, root_kid), role
    assert set(files_under(out / "cli")) == role_files("cli", root_kid, redis=False)
    admin = set(files_under(out / "admin"))
    assert {"root.key", "admin.key", "admin.cert", "nats/admin.nk", "redis/default.pass"} <= admin
    assert f"roots/{root_kid}.pub" in admin
    assert set(files_under(out / "servers")) == {"nats-users.conf", "redis-users.acl"}

    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))

    # each role's certificate says what the policy says, signed by the root
    roots = store.roots()
    planner = verify_certificate((out / "planner" / "planner.cert").read_text().strip(), roots)
    assert planner.scopes == frozenset({"plan:write"})
    perms = role_permissions(mesh_policy(policy_file), "planner", MeshSettings())
    publish, subscribe = certificate_subjects(perms, Subjects())
    assert (list(planner.publish), list(planner.subscribe)) == (publish, subscribe)
    assert "mesh.agent.counter.task" in planner.publish  # it may call counter
    assert verify_certificate((out / "cli" / "cli.cert").read_text().strip(), roots).ingress
    # a role's copy is the admin's, and the servers' files name every role's user
    for role in AGENTS:
        for name in (f"{role}.key", f"nats/{role}.nk", f"redis/{role}.pass"):
            assert (out / role / name).read_text() == (out / "admin" / name).read_text()
    acl = (out / "servers" / "redis-users.acl").read_text()
    assert {line.split()[1] for line in acl.splitlines()} == {"default", *AGENTS}
    users = (out / "servers" / "nats-users.conf").read_text()
    assert all(f"# {user}" in users for user in ("admin", "cli", *AGENTS))


def test_run_again_keeps_everything_and_renews_what_expires(
    tmp_path: Path, policy_file: Path
) -> None:
    out = tmp_path / "secrets"
    assert secrets_cli(out, "--policy", str(policy_file))[0] == 0
    before = files_under(out)
    code, output = secrets_cli(out, "--policy", str(policy_file))
    assert code == 0, output
    assert "certificates issued: none (all kept)" in output, output
    assert files_under(out) == before

    # counter's certificate close to expiry: renewed for the same key, and its copy too
    store = KeyStore(out / "admin")
    store.issue("counter", subjects=Subjects(), ttl_s=60.0)
    code, output = secrets_cli(out, "--policy", str(policy_file))
    assert code == 0, output
    assert "certificates issued: counter" in output, output
    after = files_under(out)
    assert after["counter/counter.cert"] != before["counter/counter.cert"]
    assert after["counter/counter.cert"] == after["admin/counter.cert"]
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {"admin/counter.cert", "counter/counter.cert"}


def test_the_policy_is_jetmesh_policy_file_else_the_library_roles(
    tmp_path: Path, policy_file: Path
) -> None:
    code, output = secrets_cli(tmp_path / "from-env", policy_env=policy_file)
    assert code == 0, output
    assert (tmp_path / "from-env" / "planner" / "planner.cert").exists()
    code, output = secrets_cli(tmp_path / "library")
    assert code == 0, output
    assert "certificates issued: cli, toolgate" in output
    roles = {p.name for p in (tmp_path / "library").iterdir()}
    assert roles == {"admin", "servers", "cli", "toolgate"}


def test_tool_credentials_are_written_once(tmp_path: Path, policy_file: Path) -> None:
    out = tmp_path / "secrets"
    assert secrets_cli(out, "--policy", str(policy_file), "--tool", "refund")[0] == 0
    tools = out / "tools.toml"
    assert tools.read_text().startswith('refund = "demo-refund-')
    tools.write_text('refund = "a real one"\n')
    assert secrets_cli(out, "--policy", str(policy_file), "--tool", "refund")[0] == 0
    assert tools.read_text() == 'refund = "a real one"\n'


def test_refuses_a_bad_policy_and_a_reserved_role_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles.planner]\ncalls = ["nobody"]\n')
    code, output = secrets_cli(tmp_path / "out", "--policy", str(bad))
    assert code == 1
    assert "nobody" in output
    assert not (tmp_path / "out").exists()

    clash = parse_policy({"roles": {"servers": {}}})
    with pytest.raises(ConfigError, match="'servers' is reserved"):
        write_deploy_secrets(tmp_path / "out", clash, MeshSettings())
    assert not (tmp_path / "out").exists()


@pytest.fixture
def servers_from_files(tmp_path: Path, policy_file: Path) -> Iterator[MeshSettings]:
    """Secrets written, nats-server and redis-server started from DIR/servers/* alone, and
    the admin step run with DIR/admin; settings for the roles (without a keys dir)."""
    out = tmp_path / "secrets"
    written = write_deploy_secrets(out, mesh_policy(policy_file), MeshSettings())
    users = os.path.relpath(written.nats_users, tmp_path / "nats")  # nats-server: relative
    nats = NatsServer(data_dir=tmp_path / "nats", config_extra=f'include "{users}"')
    redis = RedisServer(
        data_dir=tmp_path / "redis",
        aclfile=written.redis_acl,
        password=(written.admin_dir / "redis" / "default.pass").read_text().strip(),
    )
    nats.start()
    try:
        redis.start()
        try:
            base = MeshSettings(
                nats_url=nats.url,
                redis_url=f"redis://{redis.address}/0",
                policy_file=policy_file,
                state_dir=tmp_path / "state",
            )
            admin = base.model_copy(update={"keys_dir": written.admin_dir})
            asyncio.run(provision(admin, mesh_policy(policy_file)))
            yield base
        finally:
            redis.stop()
    finally:
        nats.stop()


def as_role(base: MeshSettings, role: str) -> MeshSettings:
    keys_dir = base.state_dir.parent / "secrets" / role
    return base.model_copy(update={"keys_dir": keys_dir, "state_dir": base.state_dir / role})


@pytest.mark.integration
def test_each_role_runs_on_its_own_directory_alone(
    servers_from_files: MeshSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = servers_from_files
    monkeypatch.chdir(REPO_ROOT)  # the child processes import tests.harness.agents
    logs = tmp_path / "logs"
    procs = [
        AgentProcess([f"tests.harness.agents:{role}"], as_role(base, role), log_file=logs / role)
        for role in ("counter", "planner")
    ]
    try:
        for proc in procs:
            proc.start()

        async def ask() -> tuple[str | None, Report]:
            cli_settings = as_role(base, "cli")
            store = KeyStore(cli_settings.resolved_keys_dir)
            client = MeshClient(cli_settings, store.identity("cli"), roots=store.roots())
            await client.start()
            try:
                report = await client.request(
                    "planner", Plan(pause_s=0), token=client.mint_token("alice"), returns=Report
                )
                return client.login.user, report
            finally:
                await client.close()

        user, report = asyncio.run(ask())
        assert user == "cli"
        assert report.parts == [1, 2]  # planner called counter: both served, each as itself
    finally:
        for proc in procs:
            proc.stop(timeout=10.0)
    for role in ("counter", "planner"):
        assert "ermissions violation" not in (logs / role).read_text()


@pytest.mark.integration
def test_a_role_directory_holds_no_other_role_secret(
    servers_from_files: MeshSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter_dir = as_role(servers_from_files, "counter").resolved_keys_dir
    present = {p.name for p in counter_dir.rglob("*") if p.is_file()}
    assert not {"root.key", "planner.key", "planner.nk", "planner.pass", "default.pass"} & present
    assert not any("planner" in name or "admin" in name for name in present)

    # started as planner with counter's directory: no identity to run on, so it stops
    monkeypatch.chdir(REPO_ROOT)
    settings = as_role(servers_from_files, "counter")
    proc = AgentProcess(["tests.harness.agents:planner"], settings, log_file=tmp_path / "log")
    with pytest.raises(ConfigError, match="did not start"):
        proc.start()
    assert "no certificate for 'planner'" in (tmp_path / "log").read_text()
