"""A process jetmesh starts freezes what it imported and collects its young objects less
often (jetmesh.runtime.gc_tuning); each case runs in a process of its own, since the
collector's settings are the whole process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# The entry point with its serving replaced: what the collector looks like when the
# replicas would start.
_RUN_FOREVER = """
import asyncio, gc, json
import jetmesh.cli.run as run

async def serve(agents, settings, **options):
    print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}))

run.serve = serve
run.run_forever([])
"""


def _python(code: str, **env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_settle_heap_freezes_and_raises_the_young_threshold() -> None:
    seen = _python(
        """
        import gc, json
        from jetmesh.runtime.gc_tuning import settle_heap
        before = gc.get_threshold()
        settle_heap(12345)
        print(json.dumps({"before": before, "after": gc.get_threshold(),
                          "frozen": gc.get_freeze_count()}))
        """
    )
    before, after = seen["before"], seen["after"]
    assert isinstance(before, list)
    assert isinstance(after, list)
    assert after == [12345, before[1], before[2]]
    assert isinstance(seen["frozen"], int)
    assert seen["frozen"] > 10_000


def test_settle_heap_zero_leaves_the_collector_alone() -> None:
    seen = _python(
        """
        import gc, json
        from jetmesh.runtime.gc_tuning import settle_heap
        before = gc.get_threshold()
        settle_heap(0)
        print(json.dumps({"same": gc.get_threshold() == before, "frozen": gc.get_freeze_count()}))
        """
    )
    assert seen == {"same": True, "frozen": 0}


@pytest.mark.parametrize(
    ("env", "young", "frozen"),
    [({}, 20_000, True), ({"JETMESH_GC_YOUNG_THRESHOLD": "0"}, 700, False)],
)
def test_run_forever_tunes_before_serving(env: dict[str, str], young: int, frozen: bool) -> None:
    seen = _python(_RUN_FOREVER, **env)
    threshold, count = seen["threshold"], seen["frozen"]
    assert isinstance(threshold, list)
    assert isinstance(count, int)
    assert threshold[0] == young
    assert (count > 0) is frozen
