"""``jetmesh cost`` against replicas on the test servers: a table by group with its total,
JSON, forged events on a line of their own, bad options refused; and as the admin on servers
that enforce the policy."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import time
from pathlib import Path

import msgspec
import pytest
import typer

from jetmesh import Event, EventPayload
from jetmesh.cli.cost import parse_since
from jetmesh.envelope import new_id
from jetmesh.processes import settings_env
from tests.harness.mesh import WAIT_S, Mesh, jetmesh
from tests.harness.secured import SecuredMesh
from tests.test_cost import MODEL, Ask, Used, asker, priced

pytestmark = pytest.mark.integration


async def cost_json(mesh: Mesh, *args: str, calls: int) -> dict[str, object]:
    """``jetmesh cost --json ARGS`` once ``calls`` calls are stored."""
    deadline = time.monotonic() + WAIT_S
    while True:
        code, out, err = await jetmesh(mesh, "cost", "--json", *args)
        assert code == 0, err
        report: dict[str, object] = json.loads(out)
        total = report["total"]
        assert isinstance(total, dict)
        if total["calls"] >= calls or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.1)


async def test_cost_by_tenant_as_json_and_as_a_table(mesh: Mesh, tmp_path: Path) -> None:
    prices = priced(mesh, tmp_path)
    await mesh.start_replicas(asker("classify", calls=1))
    (kb,) = await mesh.start_replicas(asker("kb", calls=0))
    client = await mesh.ingress()
    workflows = []
    spent: dict[str, float] = {}
    for tenant, words in (("acme", "charged twice"), ("globex", "crash"), ("acme", "refund")):
        token = mesh.token("alice", tenant=tenant)
        workflows.append(new_id())
        used = await client.request(
            "classify", Ask(words), token=token, returns=Used, workflow=workflows[-1]
        )
        ((t_in, t_out),) = used.tokens
        spent[tenant] = spent.get(tenant, 0.0) + (prices.cost(MODEL, t_in, t_out) or 0.0)
    forged = Event(
        kind="model",
        agent="classify",
        at=time.time(),
        callee_step="classify/model.9",
        model=MODEL,
        tokens_in=1,
        tokens_out=1,
        cost_usd=99.0,
        body=EventPayload(type="mesh.ModelReply/1", value=msgspec.Raw(b"{}")),
    )
    await kb.mesh.emit(workflows[0], forged, caller=mesh.token("alice", tenant="acme"))
    assert await kb.mesh.flush_events()

    report = await cost_json(mesh, "--by", "tenant", "--since", "1h", calls=3)
    groups = report["groups"]
    assert isinstance(groups, list)
    assert [g["key"] for g in groups] == sorted(spent, key=lambda t: -spent[t])
    for group in groups:
        assert group["cost_usd"] == pytest.approx(spent[group["key"]])
    assert report["not_counted"] == 1, "kb's event naming classify"

    code, out, err = await jetmesh(mesh, "cost", "--by", "tenant", "--since", "1h")
    assert code == 0, err
    assert "by tenant" in out
    acme = next(line for line in out.splitlines() if " acme " in line)
    assert " 2 " in acme, acme
    total = next(line for line in out.splitlines() if "total" in line)
    assert " 3 " in total, total
    assert "not counted: 1 events failing verification" in out

    one = await cost_json(mesh, "--by", "caller", "--workflow", workflows[1], calls=1)
    (only,) = one["groups"]
    assert (only["key"], only["calls"]) == ("alice", 1)
    assert only["cost_usd"] == pytest.approx(spent["globex"])
    assert one["not_counted"] == 0

    code, out, err = await jetmesh(mesh, "cost", "--workflow", new_id())
    assert code == 0, err
    assert "no model calls" in out


async def test_bad_options_are_refused(mesh: Mesh) -> None:
    code, _, err = await jetmesh(mesh, "cost", "--by", "weather")
    assert code == 2
    assert "--by must be one of caller, tenant, role, model" in err
    code, _, err = await jetmesh(mesh, "cost", "--since", "yesterday")
    assert code == 2
    assert "neither a duration" in err
    code, _, err = await jetmesh(mesh, "cost", "--timeout", "0")
    assert code == 1
    assert "took over 0 s to read" in err


def test_since_takes_a_duration_or_an_iso_time() -> None:
    now = 1_000_000.0
    assert parse_since("24h", now) == now - 86_400
    assert parse_since("30m", now) == now - 1_800
    assert parse_since("2d", now) == now - 172_800
    assert parse_since("1.5s", now) == now - 1.5
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp()
    assert parse_since("2026-01-02T03:04:05", now) == at
    assert parse_since("2026-01-02T04:04:05+01:00", now) == at
    with pytest.raises(typer.BadParameter):
        parse_since("-3h", now)


async def test_cost_reads_as_the_admin_on_servers_that_enforce_the_policy(
    secured: SecuredMesh,
) -> None:
    """The planner role of the secured mesh asks the model; ``jetmesh cost`` connects as the
    admin and reads its events across workflows."""
    await secured.start_replicas(asker("planner", calls=2))
    client = await secured.ingress()
    token = client.mint_token("dave", tenant="hooli", scopes=[])
    used = await client.request("planner", Ask("plan a refund"), token=token, returns=Used)
    env = settings_env(secured.settings)
    deadline = time.monotonic() + WAIT_S
    while True:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jetmesh.cli",
            "cost",
            "--by",
            "tenant",
            "--json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        report = json.loads(out)
        if report["total"]["calls"] >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    (hooli,) = report["groups"]
    assert (hooli["key"], hooli["calls"]) == ("hooli", 2)
    assert hooli["tokens_in"] == sum(t_in for t_in, _ in used.tokens)
    assert hooli["tokens_out"] == sum(t_out for _, t_out in used.tokens)
