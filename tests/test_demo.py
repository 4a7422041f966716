"""`jetmesh demo` end to end: servers, four agent processes, three workflows, trees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.integration
def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    env = {**os.environ, "JETMESH_STATE_DIR": str(tmp_path / "state")}
    for _ in range(2):  # runs again without cleanup
        done = subprocess.run(
            [sys.executable, "-m", "jetmesh.cli", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert out.count("signed ok") == 12  # 3 workflows x (accepted + 3 hops)
        assert "T-1001 -> billing" in out
        assert "T-1002 -> technical" in out
        assert "routed: billing" in out
        assert out.count("triage/route = Route(team=") == 3  # read back from Redis
        assert "SIGNATURE BAD" not in out
        assert "stopped" in out
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout == "", f"processes left running: {leftovers.stdout}"
