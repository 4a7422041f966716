"""``jetmesh events`` shows which message a refusal names: its ``Nats-Msg-Id`` as the
sender set it (``message``) and its tasks stream sequence (``seq``), on the refused hop, in
``--raw``, and as lines of their own for refusals about no task (workflow ``_unverified``),
which are not ingress entries of the tree."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from jetmesh import events as ev
from jetmesh.cli.events import names, node_label, raw_line, render, split
from jetmesh.dead_letters import DEAD_LETTER_FAILED, UNVERIFIED_WORKFLOW
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent
from jetmesh.identity.verifier import MSG_ID_HEADER
from tests.harness.mesh import Echo, EchoAgent, Mesh, jetmesh, rejected

WF = "01JD0000000000000000000000"


def printed(*renderables: object) -> str:
    out = io.StringIO()
    console = Console(file=out, width=300, force_terminal=False, color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return out.getvalue()


def refusal(
    kind: str,
    *,
    message: str = "",
    seq: int | None = None,
    task: str | None = None,
    verified: bool = True,
    reason: str = "bad-signature",
) -> LoggedEvent:
    event = ev.Event(
        kind=kind,
        agent="echo",
        at=1.0,
        task=task,
        step="echo" if task else "",
        reason=reason,
        detail="mesh.agent.echo.task: signature does not match",
        message=message,
        seq=seq,
    )
    return LoggedEvent(event, WF if task else UNVERIFIED_WORKFLOW, "echo", verified)


def test_a_refusal_names_its_message_and_sequence() -> None:
    assert names(refusal(ev.REJECTED, message="01JABC", seq=7)) == "message=01JABC seq=7"
    assert names(refusal(DEAD_LETTER_FAILED, seq=3)) == "seq=3"
    assert names(refusal(ev.FAILED, seq=9, reason="max-deliveries")) == "seq=9"
    assert names(refusal(ev.REJECTED)) == ""
    other = LoggedEvent(ev.Event(kind=ev.STARTED, agent="echo", at=1.0, seq=4), WF, "echo", True)
    assert names(other) == "", "only refusals and give-ups name a message"


def test_the_raw_list_shows_message_and_sequence() -> None:
    line = printed(raw_line(refusal(ev.REJECTED, message="pub-1", seq=12)))
    assert "message=pub-1 seq=12" in line
    assert "seq=" not in printed(raw_line(refusal(ev.REJECTED)))


def test_refusals_about_no_task_are_lines_of_their_own() -> None:
    """In ``_unverified`` two refusals of the same role used to become one ingress entry
    (``accepted``, asked again); now each is a line with its reason, message and seq."""
    logged = [
        refusal(ev.REJECTED, message="pub-1", seq=12),
        refusal(ev.REJECTED, message="pub-2", seq=13, reason="unsigned"),
        refusal(ev.FAILED, seq=14, reason="max-deliveries"),
    ]
    roots, refusals = split(logged)
    assert roots == []
    assert refusals == logged
    out = printed(render(UNVERIFIED_WORKFLOW, roots, refusals))
    lines = out.splitlines()
    assert "accepted" not in out
    assert any("bad-signature" in x and "message=pub-1 seq=12" in x for x in lines), out
    assert any("unsigned" in x and "message=pub-2 seq=13" in x for x in lines), out
    assert any("max-deliveries" in x and "failed" in x and "seq=14" in x for x in lines), out
    assert "signed ok" in out


def test_an_unverified_refusal_line_says_so() -> None:
    forged = refusal(ev.REJECTED, message="pub-3", seq=2, verified=False)
    forged = LoggedEvent(forged.event, forged.workflow, "kb", False, problem="forged: kb")
    out = printed(render(UNVERIFIED_WORKFLOW, *split([forged])))
    assert "BAD (forged: kb)" in out
    assert "signed ok" not in out


def test_a_refused_hop_shows_the_message_it_refused() -> None:
    logged = [refusal(ev.REJECTED, message="01JTASK", seq=5, task="01JTASK", reason="stale")]
    roots, refusals = split(logged)
    assert refusals == []
    (node,) = roots
    assert node.status == "rejected"
    label = printed(node_label(node))
    assert "message=01JTASK seq=5" in label
    assert "stale" in label


def test_a_message_id_is_shown_as_data() -> None:
    """The id is the sender's choice: markup and control characters stay inert."""
    hostile = refusal(ev.REJECTED, message="[red]x\x1b[2J", seq=1)
    out = printed(render(UNVERIFIED_WORKFLOW, *split([hostile])), raw_line(hostile))
    assert "\x1b" not in out
    assert "[red]x" in out


@pytest.mark.integration
async def test_jetmesh_events_lists_the_refusals_of_unverified(mesh: Mesh, echo: EchoAgent) -> None:
    """Two tasks refused before their envelopes could be read: ``jetmesh events
    _unverified`` prints each on a line of its own with the id and the sequence its
    publisher sent and was acked (and ``--raw`` says the same)."""
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    attacker = await mesh.attacker()
    sent: dict[str, int] = {}
    for n in (1, 2):
        sealed = mesh.seal(Echo(f"unsigned {n}"), token=mesh.token())
        msg_id = f"publisher-{n}-{new_id()}"
        ack = await attacker.publish(
            mesh.subjects.task("echo"), sealed.data, {MSG_ID_HEADER: msg_id}
        )
        sent[msg_id] = ack.seq

    def both(got: list[LoggedEvent]) -> bool:
        return {e.event.message for e in rejected(got, "unsigned", "echo")} >= set(sent)

    await mesh.wait_events(UNVERIFIED_WORKFLOW, both)
    code, out, err = await jetmesh(mesh, "events", UNVERIFIED_WORKFLOW)
    assert code == 0, err
    for msg_id, seq in sent.items():
        (line,) = [x for x in out.splitlines() if f"message={msg_id} seq={seq}" in x]
        assert "unsigned" in line
        assert "rejected" in line
        assert "signed ok" in line
    assert "accepted" not in out
    code, out, err = await jetmesh(mesh, "events", UNVERIFIED_WORKFLOW, "--raw")
    assert code == 0, err
    for msg_id, seq in sent.items():
        assert f"message={msg_id} seq={seq}" in out
