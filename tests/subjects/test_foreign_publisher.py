"""A publisher in another language needs nothing but subjects/: the Node.js example
(subjects/examples/node, Node's built-ins only) publishes to a mesh on servers that enforce
a policy, as an ingress role of its own, and reads the workflow back.

The mesh's side is jetmesh's: servers started as ``jetmesh up`` starts them, an ``echo``
replica connected as its role. The Node side gets only what ``jetmesh up`` wrote for its
role (its nkey seed, identity key and certificate) and the trusted root keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.js.errors import NotFoundError

from jetmesh import MeshClient
from jetmesh import events as ev
from jetmesh.bus.connection import connect
from jetmesh.dead_letters import MSG_ID_HEADER, REASON_HEADER
from jetmesh.logins import admin_login
from jetmesh.policy import parse_policy
from tests.harness.mesh import REPO_ROOT, EchoAgent
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

NODE = shutil.which("node")
EXAMPLE = REPO_ROOT / "subjects" / "examples" / "node"
VECTORS = REPO_ROOT / "subjects" / "vectors"
ROLE = "node-ingest"
RUN_TIMEOUT_S = 60.0

POLICY = {
    "roles": {
        ROLE: {"ingress": True, "calls": ["echo"]},
        "echo": {},
        "billing": {},
    }
}
"""The Node publisher may start workflows at ``echo`` and nowhere else (not ``billing``)."""

NODE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("JETMESH_") and k != "NATS_URL"}
"""The script reads its options from these too: the tests give every one on the command line."""

if NODE is None:
    pytest.skip(
        "node is not installed: the foreign publisher example runs on Node.js",
        allow_module_level=True,
    )


@dataclass
class Run:
    """A finished run of a Node script: exit code, the JSON it printed, its stderr."""

    code: int
    out: dict[str, Any]
    err: str


async def node(script: str, *args: str) -> tuple[int, str, str]:
    """Run ``node subjects/examples/node/<script> ARGS``; it is killed if it outlives the
    timeout (the test then fails on its exit code)."""
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(EXAMPLE / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=NODE_ENV,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class ForeignMesh:
    """Enforced servers with :data:`POLICY`, an ``echo`` replica, and the Node publisher."""

    def __init__(self, secured: SecuredMesh, echo: EchoAgent) -> None:
        self.secured = secured
        self.echo = echo

    @property
    def keys_dir(self) -> Path:
        return self.secured.settings.resolved_keys_dir

    async def publish(
        self, *args: str, agent: str | None = "echo", keys: Path | None = None
    ) -> Run:
        """Run publish.mjs as :data:`ROLE` with ``args`` (to ``agent``; None: read only)."""
        target = ["--agent", agent] if agent else []
        code, out, err = await node(
            "publish.mjs",
            "--server",
            self.secured.settings.nats_url,
            "--keys",
            str(keys or self.keys_dir),
            "--role",
            ROLE,
            *target,
            "--timeout",
            "15",
            *args,
        )
        return Run(code, json.loads(out) if out.strip() else {}, err)

    async def dead_letters(self, agent: str) -> list[tuple[str, dict[str, str]]]:
        """(reason, headers) of each dead letter of ``agent``, read as the admin (no role
        may read the dead-letter stream)."""
        settings = self.secured.settings
        nc = await connect(settings.nats_url, "admin/test", **admin_login(settings).nats_options())
        out: list[tuple[str, dict[str, str]]] = []
        try:
            js, seq = nc.jetstream(), 1
            while True:
                try:
                    raw = await js.get_msg(
                        settings.dlq_stream, seq=seq, subject=f"mesh.dlq.{agent}", next=True
                    )
                except NotFoundError:
                    return out
                headers = dict(raw.headers or {})
                out.append((headers.get(REASON_HEADER, ""), headers))
                seq = (raw.seq or seq) + 1
        finally:
            await nc.close()

    async def stored_tasks(self, agent: str) -> int:
        """How many tasks for ``agent`` the tasks stream holds (read as the admin)."""
        settings = self.secured.settings
        nc = await connect(settings.nats_url, "admin/test", **admin_login(settings).nats_options())
        try:
            info = await nc.jetstream().stream_info(
                settings.tasks_stream, subjects_filter=f"mesh.agent.{agent}.task"
            )
            return sum((info.state.subjects or {}).values())
        finally:
            await nc.close()


@pytest.fixture
async def foreign(tmp_path: Path) -> AsyncIterator[ForeignMesh]:
    secured = await asyncio.to_thread(SecuredMesh(tmp_path / "state", parse_policy(POLICY)).up)
    echo = EchoAgent("echo")
    try:
        await secured.start_replicas(echo.agent)
        yield ForeignMesh(secured, echo)
    finally:
        try:
            await secured.aclose()
        finally:
            await asyncio.to_thread(secured.down)


async def test_node_publisher_gets_the_verified_reply_and_reads_the_events(
    foreign: ForeignMesh,
) -> None:
    run = await foreign.publish("--body", json.dumps({"text": "hi from node"}), "--events")

    assert run.code == 0, run.err
    assert run.out["server_errors"] == []
    task, reply = run.out["task"], run.out["reply"]
    assert task["stream"] == foreign.secured.settings.tasks_stream
    assert task["seq"] >= 1
    assert reply == {
        "verified": True,
        "signer": "echo",
        "scheme": reply["scheme"],
        "kind": "reply",
        "type": "test.Echo/1",
        "body": {"text": "HI FROM NODE"},
    }
    assert reply["scheme"] in ("ed25519", "ed25519-merkle-sha256")
    assert foreign.echo.seen == ["hi from node"]

    events = run.out["events"]
    assert events
    assert all(e["verified"] for e in events), events
    assert all(e["signer"] == e["agent"] == "echo" for e in events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    (completed,) = [e for e in events if e["kind"] == "completed" and e["task"] == task["id"]]
    assert completed["event"]["body"]["value"] == {"text": "HI FROM NODE"}
    assert completed["event"]["caller"] == "node-user"  # the subject of the token Node minted


async def test_an_event_forged_by_the_compromised_publisher_role_is_told_apart(
    foreign: ForeignMesh,
) -> None:
    """With the publisher role's secrets alone (its NATS user and its identity key), one may
    write events into a workflow, but not as another role: a reader trusts the signer,
    never the ``agent`` the body names."""
    run = await foreign.publish("--body", json.dumps({"text": "real"}), "--events")
    assert run.code == 0, run.err
    workflow = run.out["task"]["workflow"]

    secured = foreign.secured
    client = MeshClient(secured.settings, secured.keys.identity(ROLE), roots=secured.keys.roots())
    secured.clients.append(client)
    await client.start()
    assert client.login.user == ROLE  # connected as the role, nothing more
    forged = ev.Event(
        kind=ev.COMPLETED,
        agent="echo",
        at=time.time(),
        task=run.out["task"]["id"],
        step="echo",
        body=ev.EventPayload(type="test.Echo/1", value=msgspec.Raw(b'{"text":"FORGED"}')),
    )
    await client.emit(workflow, forged, caller="")
    assert await client.flush_events(timeout=10)

    read = await foreign.publish("--workflow", workflow, agent=None)
    assert read.code == 0, read.err
    events = read.out["events"]
    genuine = [e for e in events if e["verified"]]
    refused = [e for e in events if not e["verified"]]
    assert [e["kind"] for e in genuine] == ["completed"]
    assert genuine[0]["event"]["body"]["value"] == {"text": "REAL"}
    assert len(refused) == 1
    assert refused[0]["refused"] == "forged"
    assert refused[0]["detail"] == f"signed by {ROLE}, names echo"


async def test_a_tampered_task_is_refused_and_the_refusal_found(foreign: ForeignMesh) -> None:
    run = await foreign.publish("--body", json.dumps({"text": "tampered"}), "--tamper")

    task = run.out["task"]
    assert task["tampered"] is True
    assert task["seq"] >= 1  # JetStream stored it: the receiver refuses it
    letters = await foreign.dead_letters("echo")
    refused = [reason for reason, headers in letters if headers.get(MSG_ID_HEADER) == task["id"]]
    assert refused == ["bad-signature"]
    assert foreign.echo.seen == []
    assert run.code == 0, run.out
    refusal = run.out["refusal"]
    assert refusal == {
        "reason": "bad-signature",
        "detail": refusal["detail"],
        "agent": "echo",
        "signer": "echo",
        "workflow": "_unverified",
        "message": task["id"],
        "seq": task["seq"],
        "verified": True,
    }


async def test_a_task_naming_another_sender_is_refused(foreign: ForeignMesh) -> None:
    run = await foreign.publish("--body", json.dumps({"text": "as echo"}), "--sender", "echo")

    assert run.code == 0, run.out
    assert run.out["task"]["sender"] == "echo"
    refusal = run.out["refusal"]
    assert (refusal["reason"], refusal["agent"]) == ("misaddressed", "echo")
    assert refusal["workflow"] == "_unverified"  # its envelope's workflow is not trusted
    assert (refusal["message"], refusal["seq"]) == (run.out["task"]["id"], run.out["task"]["seq"])
    assert "echo" in refusal["detail"]
    assert foreign.echo.seen == []


async def test_the_role_cannot_publish_to_another_roles_subject(foreign: ForeignMesh) -> None:
    run = await foreign.publish("--body", json.dumps({"text": "not yours"}), agent="billing")

    assert run.code == 1
    assert run.out["error"]["code"] == "permissions-violation"
    assert any(
        "permissions violation for publish to" in e.lower() and '"mesh.agent.billing.task"' in e
        for e in run.out["server_errors"]
    ), run.out
    assert "reply" not in run.out
    assert await foreign.stored_tasks("billing") == 0


async def test_a_seed_that_is_not_the_roles_is_refused_by_the_server(
    foreign: ForeignMesh, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(foreign.keys_dir, keys)
    # billing's seed: a valid nkey, of another user than the identity's role
    (keys / "nats" / f"{ROLE}.nk").write_text((keys / "nats" / "billing.nk").read_text())
    billing = await foreign.publish("--body", "{}", keys=keys)
    assert billing.code == 1
    assert billing.out["error"]["code"] == "permissions-violation"
    assert await foreign.stored_tasks("echo") == 0

    (keys / "nats" / f"{ROLE}.nk").write_text("SUNOTASEED\n")
    broken = await foreign.publish("--body", "{}", keys=keys)
    assert broken.code == 1
    assert broken.out == {}
    assert broken.err.startswith("publish.mjs: ")
    assert "seed" in broken.err


async def test_the_conformance_vectors_give_the_expected_verdicts() -> None:
    files = [VECTORS / f"{name}.json" for name in ("signatures", "envelopes", "tokens", "chains")]
    code, out, err = await node("vectors.mjs", *map(str, files))

    assert code == 0, err
    got = {
        (Path(d["file"]).stem, d["name"]): (d["verdict"], d["reason"])
        for d in map(json.loads, out.splitlines())
    }
    expected = {
        (path.stem, case["name"]): (case["verdict"], case["reason"])
        for path in files
        for case in json.loads(path.read_text())["cases"]
    }
    assert len(expected) > 40
    assert got == expected


async def test_the_readme_example_is_reproduced_from_its_seed(tmp_path: Path) -> None:
    readme = REPO_ROOT / "subjects" / "README.md"
    code, out, err = await node("readme.mjs", str(readme))
    assert code == 0, err
    assert json.loads(out) == {"key_id": True, "signature": True, "link": True, "prev": True}

    text = readme.read_text()
    (signature,) = [line for line in text.splitlines() if line.startswith("Mesh-Sig: ")]
    changed = signature[:-1] + ("A" if signature[-1] != "A" else "Q")
    (tmp_path / "README.md").write_text(text.replace(signature, changed))
    code, out, err = await node("readme.mjs", str(tmp_path / "README.md"))
    assert code == 0, err
    assert json.loads(out)["signature"] is False


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--role", ROLE, "--agent", "echo", "--body", "{not json"], "JSON"),
        (["--agent", "echo"], "--role and --agent (or --workflow) are required"),
        (["--role", ROLE, "--agent", "echo", "--workflow", "W1"], "without --agent"),
        (["--role", ROLE, "--agent", "echo", "--no-such-option"], "no-such-option"),
    ],
)
async def test_bad_options_are_refused_before_connecting(args: list[str], says: str) -> None:
    code, out, err = await node("publish.mjs", *args)
    assert code == 2
    assert out == ""
    assert err.startswith("publish.mjs: ")
    assert says in err
