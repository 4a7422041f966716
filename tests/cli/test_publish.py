"""``jetmesh publish`` fails fast and says what it did: a role the ``cli`` may not call is
refused before anything is sent (the policy file's ``calls``, the ``cli``'s certificate), a
publish nats-server refuses fails at once, a failed task prints its workflow id, and
``--raw`` sends bytes as given, to be refused and dead-lettered with their reason."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from jetmesh import Agent, Context, MeshClient, MeshSettings
from jetmesh.cli import admin_client
from jetmesh.dead_letters import DeadLetter, list_dead_letters
from jetmesh.processes import settings_env
from tests.harness.mesh import Mesh, jetmesh
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

FAILED_WORKFLOW = re.compile(r"^workflow ([0-9A-HJKMNP-TV-Z]{26}) \((.*)\)$", re.MULTILINE)

POLICY_TOML = """
[roles.cli]
calls = [{calls}]

[roles.planner]
calls = ["counter"]

[roles.counter]

[roles.approver]
"""
"""The secured mesh's policy as a file; ``calls`` is the ``cli``'s."""


class Plan(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.PublishPlan/1"

    n: int


def planner() -> Agent:
    agent = Agent("planner")

    @agent.handler
    async def plan(p: Plan, ctx: Context) -> Plan:
        return p

    return agent


def policy_file(tmp_path: Path, *calls: str) -> Path:
    path = tmp_path / f"policy-{'-'.join(calls)}.toml"
    path.write_text(POLICY_TOML.format(calls=", ".join(f'"{c}"' for c in calls)))
    return path


async def run(s: MeshSettings, *args: str) -> tuple[int, str, str]:
    """``jetmesh ARGS`` as a process on ``s`` (wide output): (exit code, out, err). It must
    end within the harness's minute: a publish that waited for its 600 s timeout fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env={**settings_env(s), "COLUMNS": "400"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def admin(secured: SecuredMesh) -> AsyncIterator[MeshClient]:
    async with admin_client(secured.settings) as client:
        yield client


async def letters(admin: MeshClient, agent: str, count: int = 1) -> list[DeadLetter]:
    """``agent``'s dead letters, once there are ``count`` (or after 10 s: the caller checks)."""
    s = admin.settings
    for _ in range(200):
        found = await list_dead_letters(admin.js, s.dlq_stream, f"{s.subject_prefix}.dlq.{agent}")
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    return found


async def test_a_role_outside_the_policy_files_calls_fails_before_sending(
    secured: SecuredMesh, admin: MeshClient, tmp_path: Path
) -> None:
    file = policy_file(tmp_path, "planner", "approver")
    s = secured.settings.model_copy(update={"policy_file": file})
    tasks = (await admin.js.stream_info(s.tasks_stream)).state.messages

    code, out, err = await run(s, "publish", "counter", '{"n": 1}', "--timeout", "600")

    assert code == 1, out
    assert "error: PublishRefused: cli may not publish to mesh.agent.counter.task" in err
    assert f"'counter' is not among the roles cli calls in {file} (approver, planner)" in err
    found = FAILED_WORKFLOW.search(err)
    assert found is not None, err
    assert found.group(2) == "nothing sent"
    assert (await admin.js.stream_info(s.tasks_stream)).state.messages == tasks


async def test_without_a_policy_file_the_cli_certificate_decides(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    code, out, err = await run(secured.settings, "publish", "counter", '{"n": 1}')

    assert code == 1, out
    assert "error: PublishRefused: cli may not publish to mesh.agent.counter.task" in err
    assert "its certificate does not name 'counter' among the roles it calls" in err
    assert "(nothing sent)" in err


async def test_a_publish_the_server_refuses_fails_at_once_with_its_workflow(
    secured: SecuredMesh, admin: MeshClient, tmp_path: Path
) -> None:
    """The cli's certificate and the policy file say it may call ``counter``, the running
    nats-server (started with the other policy) does not: its refusal ends the command."""
    file = policy_file(tmp_path, "planner", "approver", "counter")
    s = secured.settings.model_copy(update={"policy_file": file})
    code, out, err = await run(s, "admin", "provision", str(file))
    assert code == 0, err

    code, out, err = await run(s, "publish", "counter", '{"n": 1}', "--timeout", "600")

    assert code == 1, out
    assert "error: PublishRefused: cli may not publish to mesh.agent.counter.task" in err
    assert "nats-server refused it (nats: permissions violation for publish to" in err
    found = FAILED_WORKFLOW.search(err)
    assert found is not None, err
    workflow = found.group(1)
    assert found.group(2) == f"see `jetmesh events {workflow}` and `jetmesh dlq list`"


async def test_a_failed_task_prints_its_workflow(mesh: Mesh) -> None:
    code, out, err = await jetmesh(mesh, "publish", "nobody", '{"text": "x"}', "--timeout", "1")

    assert code == 1, out
    assert "error: MeshTimeout: no reply from nobody" in err
    found = FAILED_WORKFLOW.search(err)
    assert found is not None, err
    code, out, _ = await jetmesh(mesh, "events", found.group(1))
    assert code == 0
    assert "accepted" in out, "the workflow the id names is the one that was started"


@pytest.mark.parametrize(
    ("args", "sent", "reason", "detail"),
    [
        (
            ["--drop-header", "Mesh-Sig"],
            "Mesh-Key, Mesh-Sig-Scheme",
            "unsigned",
            "no Mesh-Sig header",
        ),
        (["--unsigned"], "none", "unsigned", "no Mesh-Key and no Mesh-Sig header"),
        ([], "Mesh-Key, Mesh-Sig, Mesh-Sig-Scheme", "malformed", ""),
    ],
)
async def test_raw_bytes_on_enforced_servers_are_dead_lettered_with_their_reason(
    secured: SecuredMesh,
    admin: MeshClient,
    args: list[str],
    sent: str,
    reason: str,
    detail: str,
) -> None:
    await secured.start_replicas(planner())

    code, out, err = await run(
        secured.settings, "publish", "--raw", "planner", '{"not": "an envelope"}', *args
    )

    assert code == 0, err
    assert (
        "sent 22 bytes to mesh.agent.planner.task (as the cli's login), headers: " + sent
    ) in out
    (letter,) = await letters(admin, "planner")
    assert letter.reason == reason
    assert letter.data == b'{"not": "an envelope"}'
    if detail:
        assert letter.detail == detail


async def test_raw_headers_are_sent_as_given(secured: SecuredMesh, admin: MeshClient) -> None:
    await secured.start_replicas(planner())

    code, out, err = await run(
        secured.settings,
        "publish",
        "--raw",
        "planner",
        "x",
        "--unsigned",
        "--header",
        "Mesh-Key: cli-0000000000000000",
    )

    assert code == 0, err
    assert "headers: Mesh-Key" in out
    (letter,) = await letters(admin, "planner")
    assert (letter.reason, letter.detail) == ("unsigned", "no Mesh-Sig header")


async def test_raw_to_a_role_the_cli_may_not_call_is_refused(secured: SecuredMesh) -> None:
    code, out, err = await run(secured.settings, "publish", "--raw", "counter", "x")

    assert code == 1, out
    assert "error: PublishRefused: cli may not publish to mesh.agent.counter.task" in err
