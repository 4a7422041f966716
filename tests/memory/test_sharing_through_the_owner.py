"""Sharing state between roles of one workflow, as docs/memory.md says to: the role that
owns the state keeps it in its own memory and answers calls for it. On servers that
enforce the policy, another role reads it only by calling the owner (a signed reply); a
direct read of the owner's memory is refused (``MemoryDenied``), and a role the policy does
not let call the owner cannot ask at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from jetmesh import Agent, Context, MemoryDenied, MeshTimeout, WorkingMemory
from jetmesh.envelope import new_id
from jetmesh.policy import parse_policy
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

POLICY = {
    "roles": {
        "cli": {"ingress": True, "calls": ["editor", "outsider"]},
        "editor": {"calls": ["keeper"]},
        "keeper": {},
        "outsider": {},
    }
}
"""``editor`` may call ``keeper``, the owner of the draft; ``outsider`` may not."""


class Remember(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Remember/1"

    text: str


class Recall(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Recall/1"


class Draft(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Draft/1"

    text: str | None
    version: int


class Edit(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Edit/1"

    text: str


class Edited(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Edited/1"

    seen: Draft
    direct_read: str
    """What a direct read of keeper's memory raised."""


def keeper(recalls: list[str] | None = None) -> Agent:
    """The owner of the workflow's draft: the only role that writes it (``recalls``: the
    workflows it answered a recall for)."""
    agent = Agent("keeper")

    @agent.handler
    async def remember(msg: Remember, ctx: Context) -> Draft:
        version = await ctx.memory.set("draft", msg.text)
        return Draft(msg.text, version)

    @agent.handler
    async def recall(msg: Recall, ctx: Context) -> Draft:
        if recalls is not None:
            recalls.append(ctx.workflow)
        text, version = await ctx.memory.get_versioned("draft", str)
        return Draft(text, version)

    return agent


def editor() -> Agent:
    """Stores a draft with the keeper, tries to read it directly, then asks the keeper."""
    agent = Agent("editor")

    @agent.handler
    async def edit(msg: Edit, ctx: Context) -> Edited:
        await ctx.call("keeper", Remember(msg.text), returns=Draft)
        s = ctx.mesh.settings
        theirs = WorkingMemory(ctx.mesh.redis, s.subject_prefix, ctx.workflow, "keeper")
        try:
            await theirs.get("draft", str)
            direct = "read"
        except MemoryDenied as exc:
            direct = type(exc).__name__
        seen = await ctx.call("keeper", Recall(), returns=Draft)
        return Edited(seen, direct)

    return agent


def outsider() -> Agent:
    """A role the policy does not let call the keeper."""
    agent = Agent("outsider")

    @agent.handler
    async def peek(msg: Recall, ctx: Context) -> Edited:
        try:
            seen = await ctx.call("keeper", Recall(), returns=Draft, timeout=2)
        except MeshTimeout as exc:  # the server refused the task: nobody answers
            return Edited(Draft(None, 0), type(exc).__name__)
        return Edited(seen, "answered")

    return agent


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """Servers of this test's own that enforce :data:`POLICY`."""
    built = await asyncio.to_thread(SecuredMesh(tmp_path / "state", parse_policy(POLICY)).up)
    try:
        yield built
    finally:
        try:
            await built.aclose()
        finally:
            await asyncio.to_thread(built.down)


async def test_another_role_reads_the_owners_state_by_calling_it(guarded: SecuredMesh) -> None:
    await guarded.start_replicas(keeper(), editor(), outsider())
    cli = await guarded.ingress()
    token, workflow = cli.mint_token("alice"), new_id()
    edited = await cli.request(
        "editor", Edit("v1"), token=token, returns=Edited, workflow=workflow, timeout=15
    )
    assert edited.direct_read == "MemoryDenied", "the owner's keys are not the editor's"
    assert edited.seen == Draft("v1", 1), "the owner answered from its memory"

    other = await cli.request(
        "editor", Edit("v2"), token=token, returns=Edited, workflow=new_id(), timeout=15
    )
    assert other.seen == Draft("v2", 1), "each workflow has its own memory"


async def test_a_role_not_allowed_to_call_the_owner_cannot_ask(guarded: SecuredMesh) -> None:
    recalls: list[str] = []
    await guarded.start_replicas(keeper(recalls), outsider())
    cli = await guarded.ingress()
    peeked = await cli.request(
        "outsider", Recall(), token=cli.mint_token("alice"), returns=Edited, timeout=15
    )
    assert peeked == Edited(Draft(None, 0), "MeshTimeout")
    assert recalls == [], "the keeper never got the task"
