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


def workflow(*, attempts: int = 1) -> list[LoggedEvent]:
    out = [
        logged(ev.ACCEPTED, "cli", None, None, "plan", target="plan", body=body("Q/1", "q")),
        logged(
            ev.CALL,
            "plan",
            "t1",
            None,
            "plan",
            target="kb",
            callee_step="plan/kb.1",
            body=body("Ask/1", {"q": "q"}),
        ),
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
