"""``jetmesh agents`` on servers that enforce the policy: ``jetmesh run`` processes answer
the NATS service API as their roles (with their consumer's lag, which each role may read),
the command lists them as the ``cli`` ingress, and a process stopped with SIGTERM, or
killed with SIGKILL, is gone from the next list."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jetmesh.embedded import free_port
from jetmesh.logins import nats_seed_file
from jetmesh.processes import AgentProcess, settings_env
from jetmesh.runtime.discovery import VERSION
from tests.harness.agents import Plan, Report
from tests.harness.mesh import REPO_ROOT
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration


async def agents(secured: SecuredMesh, *args: str) -> tuple[int, str, str]:
    """``jetmesh agents ARGS`` as a process on the secured mesh's settings."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        "agents",
        *args,
        env=settings_env(secured.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def listed(secured: SecuredMesh) -> dict[str, dict[str, Any]]:
    code, out, err = await agents(secured, "--json")
    assert code == 0, err
    return {row["role"]: row for row in json.loads(out)}


async def lag_read(secured: SecuredMesh) -> dict[str, dict[str, Any]]:
    """The listing once every role reports its lag (read every few seconds)."""
    rows: dict[str, dict[str, Any]] = {}
    for _ in range(100):
        rows = await listed(secured)
        if all(row["lag"] is not None for row in rows.values()):
            return rows
        await asyncio.sleep(0.1)
    return rows


def start(secured: SecuredMesh, name: str, log: Path, *args: str) -> AgentProcess:
    return AgentProcess([f"tests.harness.agents:{name}", *args], secured.settings, log_file=log)


async def gauge(port: int, role: str) -> float | None:
    """``jetmesh_consumer_lag`` for ``role`` on the process's ``/metrics``, once it is
    there (the first lag read comes right after the replica starts)."""
    for _ in range(100):
        text = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
        )
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "jetmesh_consumer_lag" and sample.labels["jetmesh_role"] == role:
                    return float(sample.value)
        await asyncio.sleep(0.1)
    return None


async def test_agents_lists_running_processes_and_forgets_stopped_ones(
    secured: SecuredMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    port = free_port()
    procs = [
        start(secured, "counter", tmp_path / "counter-1.log"),
        start(secured, "counter", tmp_path / "counter-2.log"),
        start(secured, "planner", tmp_path / "planner.log", "--health-port", str(port)),
    ]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        cli = await secured.ingress()
        report = await cli.request(
            "planner", Plan(pause_s=0), token=cli.mint_token("bob"), returns=Report, timeout=10
        )
        assert report.parts == [1, 2]

        rows = await listed(secured)
        assert sorted(rows) == ["counter", "planner"]
        counter, planner = rows["counter"], rows["planner"]
        assert counter["replicas"] == 2
        assert counter["versions"] == [VERSION]
        pids = {i["metadata"]["pid"] for i in counter["instances"]}
        assert pids == {str(procs[0].pid), str(procs[1].pid)}
        assert counter["handled"] == 2  # the planner's two calls
        assert counter["in_flight"] == 0
        assert planner["handled"] == 1
        rows = await lag_read(secured)  # each role may read its own consumer's info
        assert (rows["counter"]["lag"], rows["counter"]["ack_pending"]) == (0, 0)
        assert rows["planner"]["lag"] == 0
        assert await gauge(port, "planner") == 0.0  # jetmesh.consumer.lag, scraped
        [endpoint] = planner["instances"][0]["endpoints"]
        assert endpoint["subject"] == "mesh.agent.planner.task"
        assert endpoint["metadata"]["input_type"] == "test.Plan/1"
        schema = json.loads(endpoint["metadata"]["input_schema"])
        assert "pause_s" in schema["$defs"]["Plan"]["properties"]

        code, out, _ = await agents(secured)
        assert code == 0
        header = out.splitlines()[0].split()
        assert header[:3] == ["role", "replicas", "version"]
        assert header[-4:] == ["errors", "lag", "last", "seen"]
        assert "counter" in out
        assert "planner" in out
        assert f":{procs[2].pid}" in out  # instance@host:pid

        assert await asyncio.to_thread(procs[0].stop, 10.0) == 0
        assert "SIGTERM: draining" in (tmp_path / "counter-1.log").read_text()
        rows = await listed(secured)
        assert rows["counter"]["replicas"] == 1
        assert rows["counter"]["instances"][0]["metadata"]["pid"] == str(procs[1].pid)

        await asyncio.to_thread(procs[1].kill)  # no drain: its connection just ends
        rows = await listed(secured)
        assert sorted(rows) == ["planner"]
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop, 10.0) for p in procs))
    code, out, _ = await agents(secured)
    assert (code, out.strip()) == (0, "no agents answered")
    assert await listed(secured) == {}
    for proc in procs:  # the role's users could subscribe and answer: no violation logged
        assert "ermissions violation" not in proc.log_file.read_text()


async def test_servers_that_do_not_let_the_cli_ask_are_an_error(
    secured: SecuredMesh, tmp_path: Path
) -> None:
    """Users made before live discovery: the cli's requests are refused, which is an error
    naming the fix, not an empty list. (Here the keys directory's ``cli`` seed is
    ``counter``'s: a user that may not publish ``$SRV.PING``.)"""
    keys = tmp_path / "keys"
    seed = nats_seed_file(keys, "cli")
    seed.parent.mkdir(parents=True)
    shutil.copy2(nats_seed_file(secured.keys.directory, "counter"), seed)
    settings = secured.settings.model_copy(update={"keys_dir": keys})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        "agents",
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "no agents answered" not in out.decode()
    assert "refused the cli's service API requests" in err.decode()
    assert "jetmesh up" in err.decode()
