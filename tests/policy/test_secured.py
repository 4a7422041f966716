"""A mesh on servers that enforce the policy: every client connects as its role, binds to
what the admin step made, and can do its own work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jetmesh import ConfigError, NotProvisioned
from jetmesh.bus.connection import connect
from jetmesh.envelope import new_id
from jetmesh.event_log import build_tree, read_settled
from jetmesh.logins import admin_login
from jetmesh.processes import AgentProcess
from tests.harness.agents import (
    Approval,
    Ask,
    Decision,
    Plan,
    Report,
    approver,
    counter,
    planner,
)
from tests.harness.mesh import REPO_ROOT
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration


async def test_two_roles_serve_a_workflow_as_their_users(
    secured: SecuredMesh, caplog: pytest.LogCaptureFixture
) -> None:
    replicas = await secured.start_replicas(counter, planner)
    assert [r.mesh.login.user for r in replicas] == ["counter", "planner"]
    cli = await secured.ingress()
    assert cli.login.user == "cli"

    report = await cli.request(
        "planner", Plan(pause_s=0), token=cli.mint_token("alice"), returns=Report, timeout=10
    )
    assert report.parts == [1, 2]
    await secured.aclose()  # drained: every event flushed
    assert "ermissions violation" not in caplog.text


async def test_signal_wait_and_event_tree_read_by_direct_gets(secured: SecuredMesh) -> None:
    await secured.start_replicas(approver)
    cli = await secured.ingress()
    workflow = new_id()
    asked = asyncio.create_task(
        cli.request(
            "approver",
            Ask(timeout_s=5),
            token=cli.mint_token("alice"),
            returns=Decision,
            workflow=workflow,
        )
    )
    await asyncio.sleep(0.3)  # the step waits, polling the log
    await cli.signal(
        workflow, "approval", Approval(ok=True), token=cli.mint_token("bob"), step="approver"
    )
    assert await asyncio.wait_for(asked, 5) == Decision(True, "bob")

    (root,) = build_tree(await read_settled(cli, workflow))  # as the cli ingress
    (task,) = root.children
    assert (task.agent, task.status, task.verified) == ("approver", "completed", True)
    assert any(note.startswith("signalled: approval") for note in task.notes)


async def test_agent_process_connects_as_its_role(
    secured: SecuredMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    procs = [
        AgentProcess(
            [f"tests.harness.agents:{name}"],
            secured.settings,
            log_file=tmp_path / f"{name}.log",
        )
        for name in ("counter", "planner")
    ]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        cli = await secured.ingress()
        report = await cli.request(
            "planner", Plan(pause_s=0), token=cli.mint_token("bob"), returns=Report, timeout=10
        )
        assert report.parts == [1, 2]
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop, 10.0) for p in procs))


async def test_a_process_without_a_user_is_refused_at_once(secured: SecuredMesh) -> None:
    with pytest.raises(
        ConfigError, match=r"refused greeter/1: .*Authorization Violation.*jetmesh up"
    ):
        await asyncio.wait_for(connect(secured.settings.nats_url, "greeter/1"), 5)


async def test_a_role_binds_and_never_declares(secured: SecuredMesh) -> None:
    admin = await connect(
        secured.settings.nats_url, "admin", **admin_login(secured.settings).nats_options()
    )
    try:
        await admin.jetstream().delete_consumer(secured.settings.tasks_stream, "counter")
    finally:
        await admin.close()
    with pytest.raises(NotProvisioned, match=r"no consumer 'counter'.*jetmesh up"):
        await secured.start_replicas(counter)
