"""``ctx.gather``'s policies and the plan's limits, without servers."""

from __future__ import annotations

import asyncio

import pytest

from jetmesh import (
    CallFailed,
    Failed,
    FanOutExceeded,
    MeshSettings,
    MeshTimeout,
    Ok,
    PendingCall,
    PlanTooDeep,
)
from jetmesh.runtime.gathering import gather
from jetmesh.runtime.limits import PlanLimits, depth, plan_refusal


async def value(v: int, *, after: float = 0.0) -> int:
    await asyncio.sleep(after)
    return v


async def fails(agent: str = "w") -> int:
    raise CallFailed(agent, "RuntimeError", "boom", "max-deliveries")


async def test_fail_fast_raises_the_first_failure_itself() -> None:
    with pytest.raises(CallFailed) as failed:
        await gather([value(1), fails(), value(3)], limit=4, timeout=None, on_failure="fail-fast")
    assert failed.value.reason == "max-deliveries"


async def test_partial_keeps_each_slot_with_its_typed_error() -> None:
    got = await gather(
        [value(1), fails(), value(3, after=5)], limit=4, timeout=0.05, on_failure="partial"
    )
    assert got[0] == Ok(1)
    assert isinstance(got[1], Failed)
    assert got[1].reason == "max-deliveries"
    assert isinstance(got[2], Failed)
    assert isinstance(got[2].error, MeshTimeout)
    assert got[2].reason == "timeout"


async def test_partial_does_not_swallow_bugs() -> None:
    async def bug() -> int:
        raise KeyError("not a mesh error")

    with pytest.raises(KeyError):
        await gather([value(1), bug()], limit=2, timeout=None, on_failure="partial")


async def test_a_refused_call_sends_nothing_of_the_gather() -> None:
    sent: list[str] = []

    def call(step: str) -> PendingCall[int]:
        async def start(timeout: float | None) -> int:
            sent.append(step)
            return 1

        return PendingCall("w", step, start)

    refusal = FanOutExceeded("one too many", step="t/w.3", limit=2)

    async def refuse(timeout: float | None) -> int:
        raise refusal

    calls = [call("t/w.1"), call("t/w.2"), PendingCall("w", "t/w.3", refuse, refused=refusal)]
    with pytest.raises(FanOutExceeded):
        await gather(calls, limit=8, timeout=None, on_failure="partial")
    assert sent == []


async def test_a_call_is_awaited_once_and_takes_the_gather_timeout() -> None:
    seen: list[float | None] = []

    async def start(timeout: float | None) -> int:
        seen.append(timeout)
        return 7

    own, default = PendingCall("w", "t/w.1", start, timeout=9.0), PendingCall("w", "t/w.2", start)
    assert await gather([own, default], limit=1, timeout=2.0, on_failure="fail-fast") == [7, 7]
    assert seen == [9.0, 2.0], "a call's own deadline wins; the others get gather's"
    with pytest.raises(RuntimeError, match="awaited already"):
        await own


def test_limits() -> None:
    assert depth("triage") == 0
    assert depth("triage/billing.1/kb.2") == 2
    limits = PlanLimits(max_call_depth=2, max_fan_out=3)
    assert limits.check("a/b.1", "b", 1) is None
    too_deep = limits.check("a/b.1/c.1/d.1", "d", 1)
    assert isinstance(too_deep, PlanTooDeep)
    assert (too_deep.reason, too_deep.step, too_deep.limit) == ("plan-too-deep", "a/b.1/c.1/d.1", 2)
    assert isinstance(limits.check("a/b.4", "b", 4), FanOutExceeded)
    assert limits.check_arrival("a/b.1/c.1") is None
    assert isinstance(limits.check_arrival("a/b.1/c.1/d.1"), PlanTooDeep)
    assert plan_refusal(too_deep) == ("plan-too-deep", "PlanTooDeep", too_deep.detail)
    assert plan_refusal(CallFailed("x", "PlanTooDeep", "deep", "plan-too-deep")) == (
        "plan-too-deep",
        "PlanTooDeep",
        "deep",
    )
    assert plan_refusal(CallFailed("x", "RuntimeError", "...", "max-deliveries")) is None


def test_a_policy_file_caps_the_call_depth(tmp_path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("max_delegation_depth = 2\n[roles.cli]\ningress = true\n[roles.kb]\n")
    settings = MeshSettings(policy_file=policy, max_call_depth=8)
    assert PlanLimits.of(settings).max_call_depth == 2
    assert PlanLimits.of(MeshSettings(policy_file=policy, max_call_depth=1)).max_call_depth == 1
    assert PlanLimits.of(MeshSettings(max_call_depth=8)).max_call_depth == 8
