"""Dead letters inspected and sent back: `jetmesh dlq list|show|redrive` on real servers."""

from __future__ import annotations

import io

import msgspec
import pytest
from rich.console import Console

from jetmesh import Agent, CallFailed, Context, Reject
from jetmesh.cli.dlq import show_letter
from jetmesh.dead_letters import DeadLetter, list_dead_letters
from jetmesh.envelope import new_id
from tests.harness.mesh import Mesh, jetmesh, kinds

pytestmark = pytest.mark.integration


class Order(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Order/1"

    n: int


def picky(fixed: list[bool], runs: list[int]) -> Agent:
    agent = Agent("picky")

    @agent.handler
    async def take(order: Order, ctx: Context) -> Order:
        runs.append(order.n)
        if not fixed:
            raise Reject("not configured yet")
        return order

    return agent


async def test_a_dead_letter_is_listed_shown_and_sent_back_once_fixed(mesh: Mesh) -> None:
    fixed: list[bool] = []
    runs: list[int] = []
    await mesh.start_replicas(picky(fixed, runs))
    client = await mesh.ingress()
    workflow = new_id()
    with pytest.raises(CallFailed, match="not configured yet"):
        await client.request(
            "picky", Order(7), token=mesh.token(), returns=Order, workflow=workflow
        )
    subject = f"{mesh.settings.subject_prefix}.dlq.>"
    (letter,) = await list_dead_letters(client.js, mesh.settings.dlq_stream, subject)
    assert (letter.agent, letter.reason) == ("picky", "rejected-by-handler")

    code, out, err = await jetmesh(mesh, "dlq", "list")
    assert code == 0, err
    assert "rejected-by-handler" in out
    assert workflow in out
    assert "1 dead letter(s)" in out
    code, out, err = await jetmesh(mesh, "dlq", "show", str(letter.seq))
    assert code == 0, err
    assert "not configured yet" in out
    assert '"n": 7' in out

    fixed.append(True)  # the cause is fixed; send it back
    code, out, err = await jetmesh(mesh, "dlq", "redrive", str(letter.seq))
    assert code == 0, err
    assert "sent again as task" in out
    logged = await mesh.wait_events(
        workflow,
        lambda got: any("sent again" not in e.event.detail for e in kinds(got, "completed")),
    )
    assert runs == [7, 7], "the handler ran again (the recorded error was cleared)"
    assert len(kinds(logged, "redriven")) == 1
    assert len(kinds(logged, "completed")) == 1
    assert await list_dead_letters(client.js, mesh.settings.dlq_stream, subject) == []

    code, _, err = await jetmesh(mesh, "dlq", "show", "999999")
    assert code == 1
    assert "no dead letter 999999" in err


@pytest.mark.parametrize(
    ("reason", "detail", "hinted"),
    [
        ("tool-in-doubt", "in doubt: a run of pay was started and never recorded", True),
        ("rejected-by-handler", "the charge is in doubt: claimed and never finished", True),
        ("rejected-by-handler", "not configured yet", False),
    ],
)
def test_show_says_how_to_settle_a_side_effect_in_doubt(
    reason: str, detail: str, hinted: bool
) -> None:
    letter = DeadLetter(7, "toolgate", reason, detail, "mesh.agent.toolgate.task", 0.0, b"", {})
    out = io.StringIO()
    show_letter(letter, Console(file=out, width=300, color_system=None))
    settle = "then jetmesh dlq settle 7 --happened|--did-not-happen --as NAME"
    assert (settle in out.getvalue()) == hinted
