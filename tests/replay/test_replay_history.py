"""Rebuilding a workflow's history from its events, without servers: inputs from the
caller's ``call`` (or ingress's ``accepted``), calls merged across attempts, events written
before bodies were recorded."""

from __future__ import annotations

import msgspec

from jetmesh import events as ev
from jetmesh.event_log import LoggedEvent
from jetmesh.replay import Payload, history_of

WF = "01JD0000000000000000000000"


def body(type_: str, value: object) -> ev.EventPayload:
    return ev.EventPayload(type=type_, value=msgspec.Raw(msgspec.json.encode(value)))


def logged(
    kind: str, agent: str, task: str | None, parent: str | None, step: str, **fields: object
) -> LoggedEvent:
    event = ev.Event(kind=kind, agent=agent, at=0.0, task=task, parent=parent, step=step, **fields)  # type: ignore[arg-type]
    return LoggedEvent(event, WF, agent, True, caller="alice")


def plan_calls_kb(*, attempt: int = 1) -> LoggedEvent:
    """plan's call of kb at step plan/kb.1 (in its run ``attempt``)."""
    return logged(
        ev.CALL, "plan", "t1", None, "plan", target="kb", callee_step="plan/kb.1",
        attempt=attempt, body=body("Ask/1", {"q": "q"}),
    )  # fmt: skip


def workflow(*, attempts: int = 1) -> list[LoggedEvent]:
    out = [
        logged(ev.ACCEPTED, "cli", None, None, "plan", target="plan", body=body("Q/1", "q")),
        plan_calls_kb(),
    ]
    for attempt in range(1, attempts + 1):  # a re-run takes the reply from the journal
        out.append(
            logged(
                ev.REPLY,
                "plan",
                "t1",
                None,
                "plan",
                target="kb",
                callee_step="plan/kb.1",
                attempt=attempt,
                duration_ms=2.0 if attempt == 1 else None,
                detail="" if attempt == 1 else "from the journal",
                body=body("Hits/1", [1, 2]),
            )
        )
    out += [
        logged(
            ev.CALL,
            "plan",
            "t1",
            None,
            "plan",
            target="kb",
            callee_step="plan/kb.2",
            body=body("Ask/1", {"q": "r"}),
        ),
        logged(
            ev.REPLY,
            "plan",
            "t1",
            None,
            "plan",
            target="kb",
            callee_step="plan/kb.2",
            reason="max-deliveries",
            body=body("mesh.ErrorBody/1", {"error_type": "X"}),
        ),
        logged(ev.COMPLETED, "kb", "t2", "t1", "plan/kb.1", body=body("Hits/1", [1, 2])),
        logged(ev.EFFECT, "plan", "t1", None, "plan", key="send", body=body("int", 7)),
        logged(
            ev.COMPLETED,
            "plan",
            "t1",
            None,
            "plan",
            attempt=attempts,
            body=body("Done/1", {"ok": True}),
        ),
    ]
    return out


def test_each_task_gets_its_input_calls_effects_and_result() -> None:
    recorded = history_of(WF, workflow())
    (accepted,) = recorded.roots
    assert accepted.input == Payload("Q/1", msgspec.Raw(b'"q"'))
    plan, kb = recorded.tasks()
    assert (plan.step, kb.step) == ("plan", "plan/kb.1")
    assert plan.input == accepted.input
    assert [(c.step, c.target, c.number) for c in plan.calls] == [
        ("plan/kb.1", "kb", 1),
        ("plan/kb.2", "kb", 2),
    ]
    first, second = plan.calls
    assert first.reply == Payload("Hits/1", msgspec.Raw(b"[1,2]"))
    assert first.duration_ms == 2.0
    assert second.reply is not None
    assert second.reply.error == "max-deliveries", "an error reply keeps its reason"
    assert plan.effects == {"send": Payload("int", msgspec.Raw(b"7"))}
    assert plan.result == Payload("Done/1", msgspec.Raw(b'{"ok":true}'))
    assert kb.input == first.sent, "a callee's input is what its caller sent"
    assert kb.result == first.reply


def test_a_rerun_after_a_crash_does_not_add_calls() -> None:
    (accepted,) = history_of(WF, workflow(attempts=3)).roots
    (plan,) = accepted.children
    assert [c.step for c in plan.calls] == ["plan/kb.1", "plan/kb.2"]
    assert plan.calls[0].duration_ms == 2.0, "the journaled reply keeps the first timing"


def test_events_without_bodies_say_so() -> None:
    old = [
        logged(ev.ACCEPTED, "cli", None, None, "plan", target="plan"),
        logged(ev.COMPLETED, "plan", "t1", None, "plan", type="Q/1"),
    ]
    (plan,) = history_of(WF, old).tasks()
    assert plan.input is not None
    assert plan.input.missing == "not recorded"
    assert plan.result is not None
    assert plan.result.missing == "not recorded"
    assert plan.result.preview() == "? (not recorded)"


def test_payloads_compare_as_json_values() -> None:
    a = Payload("T/1", msgspec.Raw(b'{"a": 1, "b": [1, 2]}'))
    assert a.same_as(Payload("T/1", msgspec.Raw(b'{"b":[1,2],"a":1}')))
    assert not a.same_as(Payload("T/2", msgspec.Raw(b'{"b":[1,2],"a":1}')))
    assert not a.same_as(Payload("T/1", None))
    assert Payload("T/1", msgspec.Raw(b'"' + b"x" * 100 + b'"')).preview(10) == 'T/1 "xxxxxx...'


def timed(item: LoggedEvent, at: float, *, signer: str = "", verified: bool = True) -> LoggedEvent:
    event = msgspec.structs.replace(item.event, at=at)
    return LoggedEvent(event, WF, signer or item.signer, verified, caller="alice")


def answered_by_its_callee(*, forged: bool = False) -> list[LoggedEvent]:
    """plan calls kb and writes no ``reply`` event (a result is logged once, by the
    callee); kb's ``completed`` carries it, verified unless ``forged``."""
    kb_done = logged(ev.COMPLETED, "kb", "t2", "t1", "plan/kb.1", body=body("Hits/1", [3]))
    return [
        timed(logged(ev.ACCEPTED, "cli", None, None, "plan", target="plan"), 1.0),
        timed(plan_calls_kb(), 1.0),
        timed(kb_done, 1.25, signer="mallory" if forged else "", verified=not forged),
        timed(logged(ev.COMPLETED, "plan", "t1", None, "plan", body=body("Done/1", 1)), 1.5),
    ]


def test_a_call_without_a_reply_event_takes_its_callees_result() -> None:
    plan, kb = history_of(WF, answered_by_its_callee()).tasks()
    (call,) = plan.calls
    assert call.reply == Payload("Hits/1", msgspec.Raw(b"[3]"))
    assert call.reply == kb.result
    assert call.duration_ms == 250.0, "from the call event to the callee's completed"


def test_a_forged_callee_result_is_not_taken_as_the_reply() -> None:
    tasks = list(history_of(WF, answered_by_its_callee(forged=True)).tasks())
    (plan,) = [t for t in tasks if t.agent == "plan"]
    assert [t.node.verified for t in tasks if t.agent == "kb"] == [False]
    (call,) = plan.calls
    assert call.reply is None
    assert call.duration_ms is None


def timed_out_then(*, sent_again: bool) -> list[LoggedEvent]:
    """plan's first run timed out on its call to kb (whose result came late); with
    ``sent_again``, its second run sent the call again and got that result."""

    out = answered_by_its_callee()
    timeout = logged(
        ev.REPLY, "plan", "t1", None, "plan", target="kb", callee_step="plan/kb.1",
        reason=ev.TIMED_OUT,
    )  # fmt: skip
    out.insert(2, timed(timeout, 1.1))
    if sent_again:
        out.insert(3, timed(plan_calls_kb(attempt=2), 1.2))
    return out


def test_a_call_that_timed_out_is_not_answered_by_a_late_result() -> None:
    plan, _ = history_of(WF, timed_out_then(sent_again=False)).tasks()
    (call,) = plan.calls
    assert call.unanswered == ev.TIMED_OUT
    assert call.reply is None, "the caller went on without it: a re-run times out again"


def test_a_call_sent_again_after_a_timeout_takes_its_answer() -> None:
    plan, _ = history_of(WF, timed_out_then(sent_again=True)).tasks()
    (call,) = plan.calls
    assert call.unanswered == ""
    assert call.reply == Payload("Hits/1", msgspec.Raw(b"[3]"))
