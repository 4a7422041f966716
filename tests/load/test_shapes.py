"""The shipped fan-out and critic-loop scenarios, run as shipped (their own servers and
agents) for 2.5 s at 10 requests a second: every request answered, the per-role breakdown
names each role with the hops the shape makes per request, and, while the mesh is still
up (the scenario's audit), one request with other values than the load's is answered
right through the door."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest

from jetmesh.cli.ingress import cli_client
from jetmesh.load import Audit, AuditFigure, AuditRun, Fleet, LoadReport, load_scenario, run_load
from jetmesh.load.shapes.wire import FanOutRequest, Gathered, LoopAnswer, LoopRequest

SCENARIOS = Path(__file__).parents[2] / "shared" / "jetmesh" / "load" / "scenarios"

ASKED: dict[str, msgspec.Struct] = {
    "fanout": FanOutRequest(text="check", parts=5),
    "loop_editor": LoopRequest(text="check", approve_round=3),
}
RETURNS: dict[str, type[msgspec.Struct]] = {"fanout": Gathered, "loop_editor": LoopAnswer}
ANSWERS: dict[str, msgspec.Struct] = {}
"""What the audit's request got, by the scenario's entry role."""


async def ask_the_entry(run: AuditRun) -> list[AuditFigure]:
    """An audit: one request to the scenario's entry, with the values of ``ASKED``."""
    agent = run.scenario.agent
    assert run.settings is not None
    async with cli_client(run.settings) as mesh:
        token = mesh.mint_token("check", tenant="load")
        answer = await mesh.request(
            agent, ASKED[agent], token=token, returns=RETURNS[agent], timeout=10
        )
    ANSWERS[agent] = answer
    return [AuditFigure(name="asked", value=1)]


async def run_shipped(name: str) -> tuple[LoadReport, Counter[str]]:
    """The shipped scenario ``name``, 2.5 s at 10/s with no warm-up and the audit above;
    the report and how many processes of each role the run launched."""
    scenario = load_scenario(SCENARIOS / f"{name}.toml", seconds=2.5, warmup_s=0, rate=10)
    scenario = scenario.model_copy(update={"audit": Audit(check=f"{__name__}:ask_the_entry")})
    launched: Counter[str] = Counter()

    def count(fleet: Fleet) -> None:
        launched.update(name.split("#")[0] for name in fleet.pids())

    report = await run_load(scenario, on_launch=count)
    assert (report.sent, report.completed, report.errors, report.lost) == (25, 25, 0, 0)
    assert report.dead_lettered == 0
    assert [(f.name, f.ok) for f in report.audit] == [("asked", True)]
    # the latency objective is the shipped rate's, on a quiet machine: not judged here
    assert [(s.name, s.ok) for s in report.slos if s.name != "p99_ms"] == [("no_loss", True)]
    return report, launched


@pytest.mark.integration
async def test_the_fan_out_gathers_its_parts_from_three_workers() -> None:
    report, launched = await run_shipped("fan-out")
    assert launched == {"fanout": 3, "fanout_worker": 3, "nats": 1, "redis": 1}
    hops = {r.role: r.hops for r in report.roles}
    assert hops.keys() == {"fanout", "fanout_worker"}
    assert hops["fanout_worker"] == 3 * hops["fanout"] > 0  # three parts a request
    assert ANSWERS["fanout"] == Gathered(parts=[f"part {n} of 5: check" for n in range(1, 6)])


@pytest.mark.integration
async def test_the_critic_loop_stops_at_the_round_the_critic_approves() -> None:
    report, launched = await run_shipped("critic-loop")
    assert launched == {"loop_editor": 1, "loop_writer": 1, "loop_critic": 1, "nats": 1, "redis": 1}
    hops = {r.role: r.hops for r in report.roles}
    assert hops.keys() == {"loop_editor", "loop_writer", "loop_critic"}
    # approved in round 2: two drafts and two reviews a request
    assert hops["loop_writer"] == hops["loop_critic"] == 2 * hops["loop_editor"] > 0
    assert ANSWERS["loop_editor"] == LoopAnswer(
        text="draft 3: check", rounds=3, stopped="threshold", score=0.75
    )


@pytest.mark.parametrize(
    ("name", "wire_type", "asked"),
    [
        ("fan-out", FanOutRequest, FanOutRequest(text="hello 0", parts=3)),
        ("critic-loop", LoopRequest, LoopRequest(text="hello 0", approve_round=2)),
    ],
)
def test_the_shipped_bodies_are_the_entrys_type(
    name: str, wire_type: type[msgspec.Struct], asked: msgspec.Struct
) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    assert scenario.payload.type == wire_type.__mesh_type__
    assert msgspec.json.decode(next(scenario.bodies()), type=wire_type) == asked
