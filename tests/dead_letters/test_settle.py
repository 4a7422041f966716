"""``jetmesh dlq settle`` on servers that enforce the policy: a side effect left in doubt
(its ``ctx.once`` claim still ``running``, its run gone) is settled as the person found it
at the target. Did not happen: the claim is removed, the task sent again, the effect runs
once. Happened: the claim stays, the effect never runs again, the dead letter goes. Each
writes a ``settled`` event, signed by the ``cli``. A step with nothing in doubt, or a claim
that changed meanwhile, is refused; a role with only its own secrets can do neither part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.exceptions import NoPermissionError

from jetmesh import (
    Agent,
    CallFailed,
    Context,
    EffectInDoubt,
    MeshClient,
    RedriveRefused,
    Reject,
    SettleRefused,
)
from jetmesh.cli.ingress import admin_client
from jetmesh.dead_letters import (
    REDRIVE_REFUSED,
    REDRIVEN,
    SETTLED,
    DeadLetter,
    settle,
    with_task,
)
from jetmesh.dead_letters.settle import _remove_if_unchanged
from jetmesh.envelope import new_id
from jetmesh.memory import keys
from jetmesh.memory.effect_claims import EffectClaim, decode_claim
from tests.dead_letters.test_redrive_trust import _events, _letters, jetmesh
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

IN_DOUBT = msgspec.json.encode(EffectClaim(state="running", holder="planner-gone#1"))


class Charge(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.SettleCharge/1"

    cents: int


def charging_planner(charged: list[int]) -> Agent:
    """A ``planner`` that charges once per step (``ctx.once``) and hands a charge in doubt
    to a person (dead-lettered at once, rather than retried)."""
    agent = Agent("planner")

    @agent.handler
    async def take(charge: Charge, ctx: Context) -> Charge:
        async def pay() -> int:
            charged.append(charge.cents)
            return charge.cents

        try:
            await ctx.once("charge", pay, returns=int)
        except EffectInDoubt as exc:
            raise Reject(f"the charge is in doubt: {exc}") from None
        return charge

    return agent


@pytest.fixture
async def admin(secured: SecuredMesh) -> AsyncIterator[MeshClient]:
    async with admin_client(secured.settings) as client:
        assert client.login.user == "admin"
        yield client


def _claim_key(admin: MeshClient, workflow: str) -> str:
    return keys.once(admin.settings.subject_prefix, workflow, "planner", "planner", "charge")


async def _in_doubt(
    secured: SecuredMesh, admin: MeshClient, charged: list[int]
) -> tuple[MeshClient, str, DeadLetter]:
    """A workflow whose charge a run claimed and never recorded (that run is gone), sent
    to the planner: refused in doubt and dead-lettered. (cli, workflow, the dead letter)."""
    await secured.start_replicas(charging_planner(charged))
    cli = await secured.ingress()
    workflow = new_id()
    await admin.redis.set(_claim_key(admin, workflow), IN_DOUBT)
    with pytest.raises(CallFailed, match="in doubt"):
        await cli.request(
            "planner", Charge(240), token=cli.mint_token("ivan"), returns=Charge, workflow=workflow
        )
    (letter,) = await _letters(admin, "planner")
    assert letter.reason == "rejected-by-handler"
    return cli, workflow, letter


async def test_did_not_happen_removes_the_claim_and_the_effect_runs_once(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    charged: list[int] = []
    cli, workflow, letter = await _in_doubt(secured, admin, charged)
    assert charged == [], "in doubt: not run again"

    code, out, err = await jetmesh(
        secured.settings, "dlq", "settle", str(letter.seq), "--did-not-happen", "--as", "alice"
    )
    assert code == 0, err
    assert "settled as not happened" in out
    assert "sent again as task" in out
    (settled,) = await _events(cli, workflow, SETTLED)
    assert (settled.signer, settled.verified, settled.event.reason) == (
        "cli",
        True,
        "did-not-happen",
    )
    assert "alice found it did not happen" in settled.event.detail
    assert len(await _events(cli, workflow, REDRIVEN)) == 1
    completed = await _events(cli, workflow, "completed")
    assert [e.event.agent for e in completed] == ["planner"]
    assert charged == [240], "the charge ran once, after the settling"
    raw = await admin.redis.get(_claim_key(admin, workflow))
    assert decode_claim(raw).state == "done"
    assert await _letters(admin, "planner") == []


async def test_happened_keeps_the_claim_and_removes_the_dead_letter(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    charged: list[int] = []
    cli, workflow, letter = await _in_doubt(secured, admin, charged)

    code, out, err = await jetmesh(
        secured.settings, "dlq", "settle", str(letter.seq), "--happened", "--as", "bob"
    )
    assert code == 0, err
    assert "settled as happened" in out
    (settled,) = await _events(cli, workflow, SETTLED)
    assert (settled.signer, settled.event.reason) == ("cli", "happened")
    assert "bob found it happened" in settled.event.detail
    assert await admin.redis.get(_claim_key(admin, workflow)) == IN_DOUBT, "never run again"
    assert await _letters(admin, "planner") == []
    assert await _events(cli, workflow, REDRIVEN, 0) == []
    assert charged == []


async def test_a_dead_letter_with_nothing_in_doubt_is_refused_and_kept(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    charged: list[int] = []
    cli, workflow, letter = await _in_doubt(secured, admin, charged)
    await admin.redis.delete(_claim_key(admin, workflow))  # settled by hand meanwhile

    code, _, err = await jetmesh(
        secured.settings, "dlq", "settle", str(letter.seq), "--did-not-happen", "--as", "alice"
    )
    assert code != 0
    assert "nothing-in-doubt" in err
    assert [x.seq for x in await _letters(admin, "planner")] == [letter.seq]
    assert await _events(cli, workflow, SETTLED, 0) == []


async def test_a_claim_that_changed_meanwhile_is_not_removed(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    key = _claim_key(admin, new_id())
    recorded = msgspec.json.encode(EffectClaim(state="done", holder="planner-late#1"))
    await admin.redis.set(key, recorded)  # its run recorded it after the claim was read
    with pytest.raises(SettleRefused, match="claim-changed"):
        await _remove_if_unchanged(admin, 7, key, IN_DOUBT)
    assert await admin.redis.get(key) == recorded


async def test_a_role_with_its_own_secrets_can_settle_nothing(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    """The planner, compromised, holds only its own secrets: it may remove its own claims
    (its keys), but not another role's, nor read or remove the dead letters, and as no
    ingress it may not send the task again."""
    charged: list[int] = []
    _, workflow, letter = await _in_doubt(secured, admin, charged)
    counter_claim = keys.once(admin.settings.subject_prefix, workflow, "counter", "c", "pay")
    await admin.redis.set(counter_claim, IN_DOUBT)
    planner = MeshClient(
        secured.settings, secured.keys.identity("planner"), roots=secured.keys.roots()
    )
    secured.clients.append(planner)
    await planner.start()

    with pytest.raises(NoPermissionError):
        await planner.redis.delete(counter_claim)
    # nats-server refuses the read (a permissions violation); the client gets no answer
    with pytest.raises(Exception, match=r"(?i)timeout|permission"):
        await _letters(planner, "planner")
    full = await with_task(admin, admin.settings.tasks_stream, letter)
    with pytest.raises(RedriveRefused, match="not-permitted"):
        await settle(planner, full, happened=False, by="mallory")
    assert await admin.redis.get(_claim_key(admin, workflow)) == IN_DOUBT
    assert await admin.redis.get(counter_claim) == IN_DOUBT
    assert [x.seq for x in await _letters(admin, "planner")] == [letter.seq]
    assert charged == []


async def test_a_dead_letter_planted_by_a_role_settles_nothing(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    """The counter, compromised, files on its own dead-letter subject a task to the planner
    for the workflow whose charge is in doubt, with headers that call it the planner's:
    settling it would have the charge run again. The task does not verify as one sent to
    the counter (the role whose subject holds it): refused and audited, the claim kept."""
    charged: list[int] = []
    cli, workflow, _ = await _in_doubt(secured, admin, charged)
    counter = MeshClient(
        secured.settings, secured.keys.identity("counter"), roots=secured.keys.roots()
    )
    secured.clients.append(counter)
    await counter.start()
    task = counter.envelope(
        kind="task",
        workflow=workflow,
        to="planner",
        body=Charge(240),
        caller=cli.mint_token("ivan"),
        step="planner",
    )
    data, headers = counter.seal(task)
    planted_headers = {
        **headers,
        "Mesh-Dlq-Agent": "planner",
        "Mesh-Dlq-Reason": "tool-in-doubt",
        "Mesh-Dlq-Detail": "safe to settle",
    }
    await counter.publisher.publish(counter.subjects.dlq("counter"), data, planted_headers)
    (planted,) = await _letters(admin, "counter")

    code, out, err = await jetmesh(
        secured.settings, "dlq", "settle", str(planted.seq), "--did-not-happen", "--as", "alice"
    )
    assert code == 1, out
    assert f"error: RedriveRefused: dead letter {planted.seq} not sent: misfiled:" in err
    (refused,) = await _events(cli, workflow, REDRIVE_REFUSED)
    assert (refused.event.reason, refused.signer, refused.verified) == ("misfiled", "cli", True)
    assert await _events(cli, workflow, SETTLED, 0) == []
    assert await admin.redis.get(_claim_key(admin, workflow)) == IN_DOUBT
    assert charged == []
