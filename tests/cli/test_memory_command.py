"""``jetmesh memory WORKFLOW [AGENT]``: a workflow's working memory as the admin reads it,
run as a process against a workflow whose handler wrote memory; an unknown workflow, a
malformed id, hostile content, a key no memory write makes, and servers that enforce the
policy."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import Agent, Context, MeshSettings
from jetmesh.embedded import free_port
from jetmesh.envelope import new_id
from jetmesh.memory import Message
from jetmesh.policy import parse_policy
from jetmesh.processes import settings_env
from tests.harness.mesh import Mesh
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

HOSTILE = "\x1b[2J[bold red]owned[/bold red]\u202e\x07"


class Note(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Note/1"

    text: str


class Noted(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Noted/1"

    version: int


def writer(name: str = "writer") -> Agent:
    """An agent that writes its draft twice, a note with the task's text, and the text as
    a message of its conversation ``support``."""
    agent = Agent(name)

    @agent.handler
    async def write(msg: Note, ctx: Context) -> Noted:
        await ctx.memory.set("draft", {"text": "one"})
        version = await ctx.memory.update("draft", dict, lambda d: {**(d or {}), "round": 2})
        await ctx.memory.set("note", msg.text)
        await ctx.conversation("support").append(Message("user", msg.text))
        return Noted(version)

    return agent


async def run_cli(settings: MeshSettings, *args: str) -> tuple[int, str, str]:
    """``jetmesh ARGS`` as a process on ``settings``: (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def redis(mesh: Mesh) -> AsyncIterator[Redis]:
    client = Redis.from_url(mesh.settings.redis_url)
    yield client
    await client.aclose()


async def written(mesh: Mesh, text: str) -> str:
    """Run the writer for a new workflow; its id."""
    await mesh.start_replicas(writer())
    cli = await mesh.ingress()
    workflow = new_id()
    done = await cli.request(
        "writer", Note(text), token=cli.mint_token("alice"), returns=Noted, workflow=workflow
    )
    assert done == Noted(2)
    return workflow


async def test_shows_each_key_with_its_version_write_and_value(mesh: Mesh) -> None:
    workflow = await written(mesh, "hello")
    code, out, err = await run_cli(mesh.settings, "memory", workflow)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == [f"workflow {workflow}", "agent writer"], out
    draft = next(line for line in lines if line.startswith("  draft "))
    assert "version 2" in draft
    assert "expires in 7.0 days" in draft
    assert lines[lines.index(draft) + 1] == '    {"text":"one","round":2}'
    note = next(line for line in lines if line.startswith("  note "))
    assert "version 1" in note
    assert lines[lines.index(note) + 1] == '    "hello"'
    assert lines[-2:] == [
        "  conversation support  1 message  expires in 7.0 days",
        "    newest user: hello",
    ], out


async def test_json_gives_every_field_of_the_stored_hash(mesh: Mesh, redis: Redis) -> None:
    workflow = await written(mesh, "hello")
    code, out, err = await run_cli(mesh.settings, "memory", workflow, "writer", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["workflow"] == workflow
    by_key = {e["key"]: e for e in shown["memory"]}
    assert sorted(by_key) == ["draft", "note"]
    draft = by_key["draft"]
    stored = await redis.hgetall(draft["redis_key"])
    assert sorted(draft["fields"]) == ["d", "v", "w"]
    assert draft["fields"] == {k.decode(): v.decode() for k, v in stored.items()}
    assert (draft["agent"], draft["version"], draft["value"]) == (
        "writer",
        2,
        {"text": "one", "round": 2},
    )
    assert draft["write"] == stored[b"w"].decode()
    assert draft["problem"] is None
    assert 0 < draft["ttl_s"] <= 7 * 24 * 3600
    (support,) = shown["conversations"]
    assert (support["agent"], support["name"], support["messages"]) == ("writer", "support", 1)
    assert support["newest"] == {"role": "user", "content": "hello", "name": ""}


async def test_an_unknown_workflow_or_agent_is_said_and_exits_1(mesh: Mesh) -> None:
    unknown = new_id()
    code, out, _ = await run_cli(mesh.settings, "memory", unknown)
    assert code == 1
    assert out.strip() == f"no working memory for workflow {unknown}"

    workflow = await written(mesh, "hello")
    code, out, _ = await run_cli(mesh.settings, "memory", workflow, "nobody")
    assert code == 1
    assert out.strip() == f"no working memory of agent nobody for workflow {workflow}"

    code, out, _ = await run_cli(mesh.settings, "memory", unknown, "--json")
    assert code == 1
    assert json.loads(out) == {"workflow": unknown, "memory": [], "conversations": []}


async def test_a_malformed_workflow_id_is_refused_before_reading(mesh: Mesh) -> None:
    code, _, err = await run_cli(mesh.settings, "memory", "wf:*")
    assert code == 2
    assert "not a workflow id" in err


async def test_hostile_values_are_shown_as_data(mesh: Mesh) -> None:
    workflow = await written(mesh, HOSTILE)
    code, out, err = await run_cli(mesh.settings, "memory", workflow, "--width", "20")
    assert code == 0, err
    for raw in ("\x1b", "\u202e", "\x07"):
        assert raw not in out
    lines = out.splitlines()
    value = lines[lines.index(next(li for li in lines if li.startswith("  note "))) + 1]
    assert value.startswith('    "\\u001b[2J[bold red]'), value  # JSON's own escape, as text
    assert re.search(r"\]…\(\+\d+\)$", value), "cut at --width characters"
    assert lines[-1] == "    newest user: \\x1b[2J[bold red]owned[…(+12)", "cut, then escaped"

    code, out, _ = await run_cli(mesh.settings, "memory", workflow, "--json")
    assert code == 0
    assert out.isascii()
    shown = json.loads(out)
    (note_entry,) = [e for e in shown["memory"] if e["key"] == "note"]
    assert note_entry["value"] == HOSTILE
    assert shown["conversations"][0]["newest"]["content"] == HOSTILE


async def test_a_key_no_memory_write_makes_is_flagged(mesh: Mesh, redis: Redis) -> None:
    """A role's key pattern (``mesh:wf:*:R:*``) also matches ``mesh:wf:<wf>:<other>:R:x``:
    such a key is shown apart, with the roles whose pattern reaches it, never as
    ``other``'s memory."""
    workflow = await written(mesh, "hello")
    prefix = mesh.settings.subject_prefix
    rogue = f"{prefix}:wf:{workflow}:writer:mallory:x"
    await redis.hset(rogue, mapping={"v": "9", "d": '"forged"', "\x1b]x": "\x1b[31m"})
    code, out, err = await run_cli(mesh.settings, "memory", workflow)
    assert code == 0, err
    assert (
        f"    ! not a memory key name (within the key pattern of 'writer' or 'mallory'): {rogue}"
        in out.splitlines()
    )
    assert "    field \\x1b]x = \\x1b[31m" in out.splitlines()
    assert "\x1b" not in out

    await redis.set(f"{prefix}:wf:{workflow}:writer:odd", "a string")
    code, out, _ = await run_cli(mesh.settings, "memory", workflow, "writer", "--json")
    (odd,) = [e for e in json.loads(out)["memory"] if e["key"] == "odd"]
    assert (odd["problem"], odd["fields"], odd["version"]) == ("not a hash", {}, None)

    await redis.set(f"{prefix}:conv:{workflow}:writer:odd", "a string")
    code, out, _ = await run_cli(mesh.settings, "memory", workflow, "writer", "--json")
    problems = {c["name"]: c["problem"] for c in json.loads(out)["conversations"]}
    assert problems == {"odd": "not a list", "support": None}


@pytest.fixture
async def enforced(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """Servers of this test's own that enforce a policy with the roles ``writer`` and
    ``scribe``, each its own Redis user."""
    policy = {
        "roles": {
            "cli": {"ingress": True, "calls": ["writer", "scribe"]},
            "writer": {},
            "scribe": {},
        }
    }
    built = await asyncio.to_thread(SecuredMesh(tmp_path / "state", parse_policy(policy)).up)
    try:
        yield built
    finally:
        try:
            await built.aclose()
        finally:
            await asyncio.to_thread(built.down)


async def test_reads_every_role_as_the_admin_where_servers_enforce_the_policy(
    enforced: SecuredMesh,
) -> None:
    """Each role's Redis user reaches only its own keys; the command reads all of them."""
    await enforced.start_replicas(writer("writer"), writer("scribe"))
    cli = await enforced.ingress()
    workflow, token = new_id(), cli.mint_token("alice")
    for role in ("writer", "scribe"):
        done = await cli.request(role, Note(role), token=token, returns=Noted, workflow=workflow)
        assert done == Noted(2)
    code, out, err = await run_cli(enforced.settings, "memory", workflow, "--json")
    assert code == 0, err
    shown = {(e["agent"], e["key"]): e["value"] for e in json.loads(out)["memory"]}
    assert shown == {
        ("scribe", "draft"): {"text": "one", "round": 2},
        ("scribe", "note"): "scribe",
        ("writer", "draft"): {"text": "one", "round": 2},
        ("writer", "note"): "writer",
    }


async def test_an_unreachable_redis_is_one_line_and_exit_1(mesh: Mesh) -> None:
    nowhere = {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_retry_s": 0}
    settings = MeshSettings(**{**mesh.settings.model_dump(), **nowhere})
    code, _, err = await run_cli(settings, "memory", new_id())
    assert code == 1
    assert err.startswith("error: Redis at redis://127.0.0.1:"), err
    assert "Traceback" not in err
