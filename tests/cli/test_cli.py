"""The ``jetmesh`` command line: keys in a state directory, and ``publish`` / ``events``
against a replica running on the test servers."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jetmesh import KeyStore
from jetmesh.cli import app
from jetmesh.identity.revocation import lookup_revocation
from jetmesh.identity.tokens import verify_token
from tests.harness.mesh import EchoAgent, Mesh, jetmesh

pytestmark = pytest.mark.integration

WORKFLOW_LINE = re.compile(r"^workflow ([0-9A-HJKMNP-TV-Z]{26})$", re.MULTILINE)


def keys_cli(state_dir: Path, *args: str) -> str:
    """Run ``jetmesh keys ARGS`` in-process with its state in ``state_dir``; its output."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("JETMESH_")}
    env["JETMESH_STATE_DIR"] = str(state_dir)
    result = CliRunner().invoke(app, ["keys", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_init_issue_show_token(tmp_path: Path) -> None:
    out = keys_cli(tmp_path, "init")
    root_kid = re.search(r"root key (root-[0-9a-f]{16})", out)
    assert root_kid is not None, out
    assert root_kid.group(1) in keys_cli(tmp_path, "init"), "init keeps an existing root"
    root_file = tmp_path / "keys" / "root.key"
    assert stat.S_IMODE(root_file.stat().st_mode) == 0o600

    out = keys_cli(tmp_path, "issue", "billing", "--scope", "kb:read", "--ttl-days", "2")
    assert re.search(r"issued billing-[0-9a-f]{16} \(valid 2 days\)", out), out

    out = keys_cli(tmp_path, "show", "billing")
    assert re.search(r"^name\s+billing$", out, re.MULTILINE), out
    assert re.search(rf"^issuer\s+{root_kid.group(1)}$", out, re.MULTILINE), out
    assert re.search(r"^scopes\s+kb:read$", out, re.MULTILINE), out
    assert re.search(r"^ingress\s+False$", out, re.MULTILINE), out
    assert re.search(r"^expires\s+in 2\.0 days$", out, re.MULTILINE), out

    token = keys_cli(
        tmp_path, "token", "alice", "--tenant", "acme", "--scope", "kb:read", "--ttl", "600"
    ).strip()
    issuer = KeyStore(tmp_path / "keys").certificate("cli")
    assert issuer.ingress, "the token's issuer was made an ingress on first use"
    caller = verify_token(token, issuer)
    assert (caller.subject, caller.tenant, caller.scopes) == ("alice", "acme", {"kb:read"})
    assert caller.expires == pytest.approx(time.time() + 600, abs=5)


async def test_publish_then_events(mesh: Mesh, echo: EchoAgent) -> None:
    await mesh.start_replicas(echo.agent)
    code, out, err = await jetmesh(
        mesh, "publish", "echo", '{"text": "hello"}', "--type", "test.Echo/1", "--as", "alice"
    )
    assert code == 0, err
    assert re.search(r'"text":\s*"HELLO"', out), out
    found = WORKFLOW_LINE.search(out)
    assert found is not None, out
    workflow = found.group(1)
    assert echo.seen == ["hello"]

    (accepted,) = await mesh.tree(workflow, hops=1)  # wait until the agent's events are stored
    assert [c.status for c in accepted.children] == ["completed"]

    code, out, err = await jetmesh(mesh, "events", workflow)
    assert code == 0, err
    assert f"workflow {workflow}" in out
    lines = out.splitlines()
    hop = [line for line in lines if "echo" in line and "completed" in line]
    assert len(hop) == 1, out
    assert "signed ok" in hop[0]
    assert "caller=alice" in hop[0]
    assert "SIGNATURE BAD" not in out
    assert "FORGED" not in out

    code, out, err = await jetmesh(mesh, "events", workflow, "--raw")
    assert code == 0, err
    assert re.search(r"completed\s+echo\s+echo\s+sig=ok", out), out
    assert "BAD" not in out


async def test_publish_refuses_a_forged_token(mesh: Mesh, echo: EchoAgent) -> None:
    await mesh.start_replicas(echo.agent)
    code, _, err = await jetmesh(
        mesh, "publish", "echo", '{"text": "x"}', "--token", "not.a.jwt", "--timeout", "5"
    )
    assert code == 1
    assert "InvalidToken" in err
    assert echo.seen == []


async def test_events_of_an_unknown_workflow(mesh: Mesh) -> None:
    await mesh.ingress()  # streams exist
    code, out, _ = await jetmesh(mesh, "events", "01JD0000000000000000000000")
    assert code == 1
    assert "no events for workflow 01JD0000000000000000000000" in out


def test_keys_rotate_keeps_permissions_and_retires_the_old_certificate(tmp_path: Path) -> None:
    keys_cli(tmp_path, "init")
    out = keys_cli(tmp_path, "issue", "billing", "--scope", "refund:write")
    old_kid = re.search(r"issued (billing-[0-9a-f]{16})", out)
    assert old_kid is not None, out
    out = keys_cli(tmp_path, "rotate", "billing", "--ttl-days", "3")
    new_kid = re.search(r"issued (billing-[0-9a-f]{16}) \(valid 3 days\)", out)
    assert new_kid is not None, out
    assert new_kid.group(1) != old_kid.group(1)
    assert f"jetmesh keys revoke {old_kid.group(1)}" in out
    store = KeyStore(tmp_path / "keys")
    cert = store.certificate("billing")
    assert (cert.kid, cert.scopes) == (new_kid.group(1), {"refund:write"})
    assert store.identity("billing").key.kid == new_kid.group(1)
    assert (tmp_path / "keys" / "retired" / f"{old_kid.group(1)}.cert").exists()


async def test_keys_revoke(mesh: Mesh) -> None:
    kid = mesh.identity("billing").key.kid
    code, out, err = await jetmesh(mesh, "keys", "revoke", kid, "--reason", "laptop stolen")
    assert code == 0, err
    assert re.search(rf"revoked {kid} by \S+ at .*\(laptop stolen\)", out), out
    revocation = await lookup_revocation((await mesh.ingress()).registry, kid)
    assert revocation is not None
    assert revocation.reason == "laptop stolen"
    code, out, err = await jetmesh(mesh, "keys", "revoke", "not.a.kid")
    assert code == 1, (out, err)
    assert "is not a key id" in err
