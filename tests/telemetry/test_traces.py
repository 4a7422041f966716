"""Traces across processes: ``jetmesh run`` processes of two roles (the ``desk`` calls the
``clerk``) and the publishing ``jetmesh publish``, exporting over OTLP/HTTP to a receiver
in the test (:mod:`tests.harness.otlp`). One workflow is one trace whose id is the
workflow's, every span's parent is among the spans received, and the spans follow the
OTel messaging and GenAI conventions; a refusal and a denied scope are span events with
ERROR status; ``jetmesh replay --rerun`` of the workflow is marked as such. With tracing
off, nothing is exported and the headers still carry the workflow's trace id."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from jetmesh.bus.tracing import trace_id_of
from jetmesh.processes import AgentProcess, settings_env
from jetmesh.telemetry.traces import tracing_configured
from tests.harness.mesh import REPO_ROOT, Mesh, until
from tests.harness.otlp import OtlpReceiver, ReceivedSpan, waterfall
from tests.harness.traced_agents import POLICY

pytestmark = pytest.mark.integration

QUESTION = '{"text": "I was charged twice for my subscription"}'
WORKFLOW = re.compile(r"^workflow (\S+)$", re.MULTILINE)


async def jetmesh(mesh: Mesh, env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """``jetmesh ARGS`` as a process on the mesh's settings, with ``env`` besides."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env=settings_env(mesh.settings) | dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_workflow(
    mesh: Mesh, env: Mapping[str, str], logs: Path, *, forged: bool = False
) -> tuple[str, str]:
    """Start the desk, and the clerk with the tool gateway, as processes with ``env`` (on
    :data:`POLICY`), publish one question (and,
    with ``forged``, bytes that are no signed task), stop them (their last spans are
    exported as they stop). Returns the workflow id and the answer printed."""
    policy = logs / "policy.toml"
    policy.write_text(POLICY)
    mesh.configure(policy_file=policy)
    procs = [
        AgentProcess(
            [f"tests.harness.traced_agents:{role}" for role in roles],
            mesh.settings,
            log_file=logs / f"{roles[0]}.log",
            env=env,
        )
        for roles in (["desk"], ["clerk", "toolgate"])
    ]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        code, out, err = await jetmesh(
            mesh, env, "publish", "desk", QUESTION, "--type", "test.Question/1"
        )
        assert code == 0, err
        found = WORKFLOW.search(out)
        assert found is not None, out
        if forged:
            code, _, err = await jetmesh(mesh, env, "publish", "desk", "not a task", "--raw")
            assert code == 0, err
            await wait_for_dead_letter(mesh)
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(p.stop, 15.0) for p in procs))
    assert codes == [0, 0], [p.log_file.read_text()[-2000:] for p in procs]
    return found.group(1), out


async def wait_for_dead_letter(mesh: Mesh) -> None:
    """Until the desk dead-lettered the forged message (its refusal is then on a span)."""
    js = (await mesh.ingress()).js
    for _ in range(100):
        info = await js.stream_info(mesh.settings.dlq_stream)
        if info.state.messages:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the forged message was not dead-lettered")


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    named: dict[str, list[ReceivedSpan]] = {}
    for s in sorted(spans, key=lambda s: s.start_ns):
        named.setdefault(s.name, []).append(s)
    return named


async def test_one_workflow_is_one_trace_across_three_processes(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    prefix = mesh.settings.subject_prefix
    desk_subject, clerk_subject = f"{prefix}.agent.desk.task", f"{prefix}.agent.clerk.task"
    gate_subject = f"{prefix}.agent.toolgate.task"
    with OtlpReceiver() as receiver:
        workflow, out = await run_workflow(mesh, receiver.env(), tmp_path, forged=True)
        code, _, err = await jetmesh(
            mesh,
            receiver.env(),
            "replay",
            workflow,
            "--rerun",
            "--agent",
            "tests.harness.traced_agents:desk",
            "--agent",
            "tests.harness.traced_agents:clerk",
        )
        assert code == 0, err
        received = receiver.snapshot()
    assert receiver.errors == []
    answer = json.loads(out[: out.rindex("workflow")])
    assert answer["label"] == "billing"
    assert answer["secret_refused"] == "scope-denied"
    assert answer["words"] == 7

    trace_id = trace_id_of(workflow)
    spans = [s for s in received if s.trace_id == trace_id]
    others = [s for s in received if s.trace_id != trace_id]
    print(f"\ntrace {trace_id} (workflow {workflow})\n{waterfall(spans)}")

    # one trace, every parent present, one root: the cli's send
    ids = {s.span_id for s in spans}
    assert len(ids) == len(spans)
    roots = [s for s in spans if not s.parent_id]
    orphans = [s.name for s in spans if s.parent_id and s.parent_id not in ids]
    assert orphans == []
    assert [(r.name, r.kind, r.service) for r in roots] == [
        (f"send {desk_subject}", "PRODUCER", "cli")
    ]
    named = by_name(spans)
    assert Counter({name: len(group) for name, group in named.items()}) == Counter(
        {
            f"send {desk_subject}": 1,
            f"process {desk_subject}": 1,
            "invoke_agent desk": 1,
            "chat offline-deterministic/templates-v1": 1,
            "execute_tool lookup": 2,  # the desk's call, the gateway's run
            f"send {gate_subject}": 1,
            f"process {gate_subject}": 1,
            "invoke_agent toolgate": 1,
            f"send {clerk_subject}": 2,
            f"process {clerk_subject}": 3,  # a retry, then a redelivery of the first
            "invoke_agent clerk": 3,
        }
    )
    kinds = {s.name.split(" ")[0]: s.kind for s in spans}
    assert kinds == {
        "send": "PRODUCER",
        "process": "CONSUMER",
        "invoke_agent": "INTERNAL",
        "chat": "CLIENT",
        "execute_tool": "INTERNAL",
    }
    assert {s.service for s in spans} == {"cli", "desk", "clerk+toolgate"}
    assert all(s.resource.get("service.instance.id") for s in spans)

    # the parents: publish -> process -> invoke_agent -> (chat, send -> process -> ...)
    by_id = {s.span_id: s for s in spans}
    [publish] = named[f"send {desk_subject}"]
    [desk] = named[f"process {desk_subject}"]
    [invoke_desk] = named["invoke_agent desk"]
    [chat] = named["chat offline-deterministic/templates-v1"]
    assert by_id[desk.parent_id] is publish
    assert by_id[invoke_desk.parent_id] is desk
    assert by_id[chat.parent_id] is invoke_desk
    asked, ran = named["execute_tool lookup"]
    [gate_send] = named[f"send {gate_subject}"]
    [gate] = named[f"process {gate_subject}"]
    [invoke_gate] = named["invoke_agent toolgate"]
    assert by_id[asked.parent_id] is invoke_desk
    assert by_id[gate_send.parent_id] is asked
    assert by_id[gate.parent_id] is gate_send
    assert by_id[invoke_gate.parent_id] is gate
    assert by_id[ran.parent_id] is invoke_gate
    assert (asked.service, ran.service) == ("desk", "clerk+toolgate")
    for s in (asked, ran):
        assert s.attributes["gen_ai.operation.name"] == "execute_tool"
        assert s.attributes["gen_ai.tool.name"] == "lookup"
    assert ran.attributes["jetmesh.tool.key"] == f"{workflow}/desk/toolgate.2"
    sends = named[f"send {clerk_subject}"]
    assert all(by_id[s.parent_id] is invoke_desk for s in sends)
    clerks = named[f"process {clerk_subject}"]
    assert [by_id[c.parent_id] for c in clerks] == [sends[0], sends[0], sends[1]]
    assert all(by_id[i.parent_id] in clerks for i in named["invoke_agent clerk"])

    # messaging attributes
    for s in (publish, gate_send, *sends):
        assert s.attributes["messaging.system"] == "nats"
        assert s.attributes["messaging.operation.type"] == "send"
        assert s.attributes["messaging.message.conversation_id"] == workflow
        assert s.attributes["messaging.destination.name"] == s.name.removeprefix("send ")
    for s, role in ((desk, "desk"), (gate, "toolgate"), *((c, "clerk") for c in clerks)):
        assert s.attributes["messaging.system"] == "nats"
        assert s.attributes["messaging.operation.type"] == "process"
        assert s.attributes["messaging.consumer.group.name"] == role
        assert s.attributes["messaging.message.conversation_id"] == workflow
        assert s.attributes["messaging.destination.name"] == s.name.removeprefix("process ")
        # the message handled is the one its parent sent
        assert (
            s.attributes["messaging.message.id"]
            == by_id[s.parent_id].attributes["messaging.message.id"]
        )
    message_ids = [s.attributes["messaging.message.id"] for s in (publish, gate_send, *sends)]
    assert len(set(message_ids)) == 4
    assert invoke_desk.attributes["gen_ai.agent.name"] == "desk"
    assert invoke_desk.attributes["gen_ai.operation.name"] == "invoke_agent"

    # the model call
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "offline-deterministic"
    assert chat.attributes["gen_ai.request.model"] == "offline-deterministic/templates-v1"
    assert chat.attributes["gen_ai.response.model"] == "offline-deterministic/templates-v1"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert "jetmesh.from_record" not in chat.attributes

    # the retry, then the redelivery
    retried, redelivered, denied = clerks
    assert retried.status == "ERROR"
    retry = retried.event("jetmesh.retry")
    assert retry is not None
    assert retry.attributes["jetmesh.reason"] == "the filing cabinet is busy"
    assert retry.attributes["jetmesh.retry.delay_s"] == 0.1
    assert "jetmesh.delivery.attempt" not in retried.attributes
    assert redelivered.status == "UNSET"
    assert redelivered.attributes["jetmesh.delivery.attempt"] == 2
    again = redelivered.event("jetmesh.redelivered")
    assert again is not None
    assert again.attributes["jetmesh.delivery.attempt"] == 2

    # the denied scope: an event on the clerk's process span, with ERROR status
    assert denied.status == "ERROR"
    event = denied.event("jetmesh.denied")
    assert event is not None
    assert event.attributes["jetmesh.reason"] == "scope-denied"
    assert "files:secret" in event.attributes["jetmesh.detail"]
    assert denied.event("jetmesh.dead_letter") is not None
    assert {s.status for s in (publish, desk, invoke_desk, chat, asked, gate, ran)} == {"UNSET"}

    # the re-run: each handler in an invoke_agent span of its own, marked
    replayed = [s for s in others if s.attributes.get("jetmesh.replayed")]
    assert sorted(s.name for s in replayed) == ["invoke_agent clerk"] * 2 + ["invoke_agent desk"]
    assert all(s.service == "cli" and not s.parent_id for s in replayed)
    assert {s.attributes["gen_ai.conversation.id"] for s in replayed} == {workflow}
    [desk_again] = [s for s in replayed if s.name == "invoke_agent desk"]
    assert desk_again.attributes["jetmesh.replay.outcome"] == "returned"

    replay_traces = {s.trace_id for s in replayed}
    [tool_again] = [s for s in others if s.trace_id in replay_traces and s not in replayed]
    assert tool_again.name == "execute_tool lookup"  # ctx.tool, answered from the history
    assert tool_again.parent_id == desk_again.span_id

    # the forged message: refused, on a process span of its own trace (it named none)
    [forged] = [s for s in others if s.trace_id not in replay_traces]
    assert (forged.name, forged.kind, forged.service) == (
        f"process {desk_subject}",
        "CONSUMER",
        "desk",
    )
    assert forged.status == "ERROR"
    refused = forged.event("jetmesh.refused")
    assert refused is not None
    assert refused.attributes["jetmesh.reason"]
    assert "messaging.message.conversation_id" not in forged.attributes


async def test_without_otel_variables_nothing_is_exported_and_headers_name_the_workflow(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint is set but ``OTEL_TRACES_EXPORTER=none``: no provider, no export;
    every message of the workflow still carries its trace id, each with a span id of its
    own."""
    monkeypatch.chdir(REPO_ROOT)
    prefix = mesh.settings.subject_prefix
    seen: list[Msg] = []
    nc = await nats.connect(mesh.settings.nats_url)

    async def keep(msg: Msg) -> None:
        seen.append(msg)

    await nc.subscribe(f"{prefix}.>", cb=keep)
    try:
        with OtlpReceiver() as receiver:
            env = receiver.env() | {"OTEL_TRACES_EXPORTER": "none"}
            workflow, _ = await run_workflow(mesh, env, tmp_path)
        await nc.flush()
    finally:
        await nc.close()
    assert receiver.requests == 0
    assert receiver.spans == []
    tasks = [m for m in seen if m.subject.endswith(".task")]
    replies = [m for m in seen if ".reply" in m.subject]
    events = [m for m in seen if f".event.{workflow}." in m.subject]
    assert len(tasks) == 4  # the desk's task, the gateway's, the clerk's two (one redelivered)
    assert len(events) >= 5
    assert len(replies) >= 4  # the gateway's, the clerk's two (one an error), the desk's
    parents = {
        (m.headers or {}).get("Nats-Msg-Id", ""): (m.headers or {}).get("traceparent", "")
        for m in tasks + replies + events
    }  # (a message sent again, the same message, has the same id and header)
    fields = [p.split("-") for p in parents.values()]
    assert {(f[0], f[1], f[3]) for f in fields} == {("00", trace_id_of(workflow), "01")}
    assert len({f[2] for f in fields}) == len(fields), parents


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_which_variables_turn_tracing_on(environ: dict[str, str], on: bool) -> None:
    assert tracing_configured(environ) is on


INSTALL_TWICE = """
import os, sys
from jetmesh.telemetry import install_tracing, shutdown_tracing, tracing_on
from jetmesh.telemetry import traces
endpoint = os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT")
assert not install_tracing("first", "i-0") and not tracing_on()  # nothing asked yet
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
assert install_tracing("first", "i-1") and tracing_on()
assert install_tracing("second", "i-2")  # the provider is installed: no change
with traces.span("one", {}):
    pass
shutdown_tracing()
assert not tracing_on()
with traces.span("dropped", {}):
    pass
assert install_tracing("third", "i-3")
with traces.span("two", {}):
    pass
shutdown_tracing()
shutdown_tracing()
"""


async def test_a_provider_is_installed_once_until_shut_down(tmp_path: Path) -> None:
    """Installing asks the variables each time until a provider is installed; then it
    changes nothing until the provider is shut down (its spans exported), after which a
    new one may be installed (the benchmark turns tracing on for one run)."""
    with OtlpReceiver() as receiver:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            INSTALL_TWICE,
            env=dict(os.environ) | receiver.env(),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        spans = receiver.snapshot()
    assert [(s.name, s.service, s.resource["service.instance.id"]) for s in spans] == [
        ("one", "first", "i-1"),
        ("two", "third", "i-3"),
    ]


async def test_a_task_out_of_deliveries_is_dead_lettered_in_its_trace(
    mesh: Mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process that takes the task is SIGKILLed while its handler runs; once the task
    is out of deliveries, the process that handles the max-deliveries advisory
    dead-letters it in a ``dead_letter`` span, the child of the publisher's ``send``."""
    monkeypatch.chdir(REPO_ROOT)
    s = mesh.configure(ack_wait_s=1.5, max_deliver=2)
    subject = f"{s.subject_prefix}.agent.staller.task"
    started: list[Msg] = []
    nc = await nats.connect(s.nats_url)

    async def keep(msg: Msg) -> None:
        started.append(msg)

    await nc.subscribe(f"{s.subject_prefix}.event.*.started", cb=keep)

    def staller(n: int) -> AgentProcess:
        return AgentProcess(
            ["tests.harness.traced_agents:staller"],
            s,
            log_file=tmp_path / f"staller-{n}.log",
            env=receiver.env(),
        )

    with OtlpReceiver() as receiver:
        first = await asyncio.to_thread(staller(1).start)
        publish = asyncio.create_task(
            jetmesh(mesh, receiver.env(), "publish", "staller", "{}", "--type", "test.Stall/1")
        )
        try:
            await until(lambda: len(started) == 1, "the first delivery started", timeout=30.0)
            first.kill()
            first.stop()  # (its pipe closed)
            second = await asyncio.to_thread(staller(2).start)
            await until(
                lambda: len(started) == 2, "the last delivery started (and was kept)", timeout=30.0
            )
            second.kill()
            second.stop()
            third = await asyncio.to_thread(staller(3).start)
            code, _, err = await publish
            assert code == 1
            assert "delivered 2 times without an ack" in err
            assert await asyncio.to_thread(third.stop, 15.0) == 0
        finally:
            publish.cancel()
            await nc.close()
        found = re.search(r"^workflow (\S+) \(see", err, re.MULTILINE)
        assert found is not None, err
        spans = receiver.snapshot()
    workflow = found.group(1)
    trace_id = trace_id_of(workflow)
    [send] = [x for x in spans if x.name == f"send {subject}"]
    [given_up] = [x for x in spans if x.name == f"dead_letter {subject}"]
    assert (send.trace_id, send.service) == (trace_id, "cli")
    assert (given_up.trace_id, given_up.parent_id) == (trace_id, send.span_id)
    assert (given_up.kind, given_up.service, given_up.status) == ("CLIENT", "staller", "ERROR")
    assert given_up.attributes["messaging.operation.type"] == "settle"
    assert given_up.attributes["messaging.consumer.group.name"] == "staller"
    assert given_up.attributes["messaging.message.id"] == send.attributes["messaging.message.id"]
    event = given_up.event("jetmesh.dead_letter")
    assert event is not None
    assert event.attributes["jetmesh.reason"] == "max-deliveries"
