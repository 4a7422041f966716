"""A step that waits for a signal (a person's approval): sent before or after it starts
waiting, verified, timed out, and durable across the death of its replica."""

from __future__ import annotations

import asyncio
import signal
import time

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import ConfigError, Event, EventPayload, MeshClient, PublishFailed, SignalTimeout
from jetmesh.envelope import new_id
from jetmesh.identity.keys import KeyPair
from jetmesh.memory import keys
from jetmesh.replay import SAME, history, rerun
from jetmesh.signals import wait_signal
from tests.harness.agents import Approval, Ask, Decision, approver
from tests.harness.mesh import Mesh, Sealed, jetmesh, kinds, signed_by

pytestmark = pytest.mark.integration


def ask(mesh: Mesh, client, workflow: str, timeout_s: float = 30.0) -> asyncio.Task[Decision]:
    return asyncio.create_task(
        client.request(
            "approver",
            Ask(timeout_s),
            token=mesh.token("alice"),
            returns=Decision,
            workflow=workflow,
            timeout=60.0,
        )
    )


async def test_a_waiting_step_goes_on_when_its_signal_comes(mesh: Mesh) -> None:
    await mesh.start_replicas(approver)
    client = await mesh.ingress()
    workflow = new_id()
    decision = ask(mesh, client, workflow)
    await mesh.wait_events(workflow, lambda got: bool(kinds(got, "waiting")))
    assert not decision.done()
    await client.signal(
        workflow, "other", Approval(False), token=mesh.token("eve"), step="approver"
    )
    await client.signal(workflow, "approval", Approval(True), token=mesh.token("bob"))
    assert await decision == Decision(True, "bob"), "the signal named approval, from bob"
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "signalled")))
    (signalled,) = kinds(logged, "signalled")
    assert signalled.event.key == "approval"
    assert signalled.event.detail == "from bob"
    assert [e.event.key for e in kinds(logged, "signal")] == ["other", "approval"]

    # A re-run of the step gets the recorded signal instead of waiting for one.
    recorded = await history(client, workflow)
    report = await rerun(recorded, [approver], redis=client.redis, settings=mesh.settings)
    assert [(t.step, t.status, t.divergences) for t in report.tasks] == [("approver", SAME, [])]


async def test_a_signal_sent_before_the_wait_counts(mesh: Mesh) -> None:
    await mesh.start_replicas(approver)
    client = await mesh.ingress()
    workflow = new_id()
    with pytest.raises(ConfigError, match="name the waiting step"):  # nobody waits yet
        await client.signal(workflow, "approval", Approval(False), token=mesh.token("bob"))
    await client.signal(
        workflow, "approval", Approval(False), token=mesh.token("bob"), step="approver"
    )
    assert await ask(mesh, client, workflow) == Decision(False, "bob")


async def test_a_wait_times_out(mesh: Mesh) -> None:
    await mesh.start_replicas(approver)
    client = await mesh.ingress()
    assert await ask(mesh, client, new_id(), timeout_s=0.5) == Decision(False, "timeout")


async def test_a_signal_stored_in_time_counts_when_read_after_the_deadline(mesh: Mesh) -> None:
    """A re-run that begins waiting after the deadline (its replica died near the end of
    the wait) still gets a decision stored before the deadline; one stored after does not."""
    client = await mesh.ingress()
    workflow = new_id()
    before = time.time() - 1.0
    await client.signal(workflow, "approval", Approval(True), token=mesh.token("bob"), step="s")
    in_time = time.time()
    got = await wait_signal(client, workflow, "approval", Approval, deadline=in_time, step="s")
    assert (got.value, got.caller) == (Approval(True), "bob")
    with pytest.raises(SignalTimeout):
        await wait_signal(client, workflow, "approval", Approval, deadline=before, step="s")


async def test_a_forged_signal_does_not_count(mesh: Mesh) -> None:
    """A signal event signed by a key the mesh does not trust is not an approval."""
    await mesh.start_replicas(approver)
    client = await mesh.ingress()
    workflow = new_id()
    event = Event(
        kind="signal",
        agent="cli",
        at=time.time(),
        key="approval",
        caller="mallory",
        body=EventPayload(type="test.Approval/1", value=msgspec.Raw(b'{"ok":true}')),
    )
    envelope = client.envelope(
        kind="event", workflow=workflow, to="events", body=event, caller=mesh.token("mallory")
    )
    data, headers = client.seal(envelope)
    rogue = signed_by(KeyPair.generate("cli"), Sealed(envelope, data, headers))
    attacker = await mesh.attacker()
    await attacker.publish(mesh.subjects.event(workflow, "signal"), data, rogue)
    assert await ask(mesh, client, workflow, timeout_s=1.0) == Decision(False, "timeout")


@pytest.mark.fault
async def test_a_wait_survives_the_death_of_its_replica(mesh: Mesh, agent_processes) -> None:
    """SIGKILL while waiting: the task goes to a new process, which waits again with the
    clock of the first wait, and goes on when the signal comes."""
    mesh.configure(ack_wait_s=1.5)
    mesh.identity("approver")
    (doomed,) = await agent_processes("tests.harness.agents:approver", 1)
    client = await mesh.ingress()
    workflow = new_id()
    decision = ask(mesh, client, workflow, timeout_s=120.0)
    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "waiting")))
    first_wait = kinds(logged, "waiting")[0]
    redis = Redis.from_url(mesh.settings.redis_url)
    try:
        prefix = mesh.settings.subject_prefix
        started_key = keys.wait(prefix, workflow, "approver", "approver", "approval")
        started = float(await redis.get(started_key))
        assert started == pytest.approx(first_wait.event.at, abs=1.0)
        assert doomed.proc is not None
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(5)
        await agent_processes("tests.harness.agents:approver", 1)
        logged = await mesh.wait_events(
            workflow, lambda got: len(kinds(got, "waiting")) == 2, timeout=20.0
        )
        assert not decision.done()
        waits = kinds(logged, "waiting")
        assert waits[0].event.instance != waits[1].event.instance, "waited again elsewhere"
        assert float(await redis.get(started_key)) == started, "the clock was not restarted"
        await client.signal(workflow, "approval", Approval(True), token=mesh.token("bob"))
        assert await decision == Decision(True, "bob")
    finally:
        await redis.aclose()


async def test_jetmesh_signal_approves_from_the_command_line(mesh: Mesh) -> None:
    await mesh.start_replicas(approver)
    client = await mesh.ingress()
    workflow = new_id()
    decision = ask(mesh, client, workflow)
    code, out, err = await jetmesh(
        mesh, "signal", workflow, "approval", '{"ok": true}', "--as", "bob", "--step", "approver"
    )
    assert code == 0, err
    assert f"signal approval sent to workflow {workflow}" in out
    assert await decision == Decision(True, "bob")
    code, _, err = await jetmesh(mesh, "signal", workflow, "approval", "{not json")
    assert code != 0
    assert "body is not JSON" in err


async def test_a_signal_too_large_to_store_is_refused_to_its_sender(mesh: Mesh) -> None:
    client = await mesh.ingress()
    huge = "x" * (mesh.settings.max_payload_bytes + 1)
    with pytest.raises(PublishFailed, match="payload over"):
        await client.signal(new_id(), "approval", huge, token=mesh.token("bob"), step="s")


async def test_the_policy_names_whose_signals_a_role_takes(
    mesh: Mesh, tmp_path: pytest.TempPathFactory
) -> None:
    """``signal_senders = ["operator"]``: the operator agent's signal decides; the cli
    ingress's, by default accepted, is refused and audited."""
    policy = tmp_path / "policy.toml"  # type: ignore[operator]
    policy.write_text(
        '[roles.cli]\ningress = true\ncalls = ["approver"]\n\n'
        '[roles.approver]\nsignal_senders = ["operator"]\n\n[roles.operator]\n'
    )
    mesh.configure(policy_file=policy)
    await mesh.start_replicas(approver)
    client = await mesh.ingress()
    operator = MeshClient(mesh.settings, mesh.identity("operator"), roots=mesh.roots)
    await operator.start()
    try:
        workflow = new_id()
        decision = ask(mesh, client, workflow)
        await mesh.wait_events(workflow, lambda got: bool(kinds(got, "waiting")))
        await client.signal(workflow, "approval", Approval(True), token=mesh.token("bob"))
        await operator.signal(workflow, "approval", Approval(False), token=mesh.token("ops"))
        assert await decision == Decision(False, "ops")
        logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "rejected")))
        (refused,) = kinds(logged, "rejected")
        assert (refused.event.reason, refused.event.agent) == ("signal-refused", "approver")
        assert "signed by cli; the wait accepts operator" in refused.event.detail
    finally:
        await operator.close()
