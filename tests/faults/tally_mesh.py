"""Replicas of the ``tally`` agent and an ingress on a test's own servers, for the tests
that restart a server in the middle of a load (see :mod:`loadtest.tally`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from jetmesh import KeyStore, MeshClient, MeshSettings, Replica, Subjects
from loadtest.tally import TALLY, send_load, tally_agent


@dataclass
class TallyMesh:
    settings: MeshSettings
    client: MeshClient
    replicas: list[Replica]

    @property
    def handled(self) -> int:
        return sum(r.handled for r in self.replicas)

    async def load_under_way(self, count: int) -> asyncio.Task[list[tuple[str, int]]]:
        """Start sending ``count`` tasks; return once a quarter of them were handled (the
        sending goes on in the returned task)."""
        load = asyncio.create_task(send_load(self.client, self.client.mint_token("alice"), count))
        for _ in range(1000):
            if self.handled >= count // 4:
                break
            await asyncio.sleep(0.01)
        assert count // 4 <= self.handled < count, "the restart falls in the middle"
        return load


@contextlib.asynccontextmanager
async def tally_mesh(settings: MeshSettings, replicas: int = 2) -> AsyncIterator[TallyMesh]:
    """``replicas`` in-process replicas of ``tally`` and an ingress; all stopped after."""
    keys = KeyStore(settings.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(settings.subject_prefix)
    keys.issue(TALLY, subjects=subjects, ttl_s=600)
    ingress = keys.issue("cli", subjects=subjects, ttl_s=600, ingress=True)
    started = [
        Replica(tally_agent(), settings, keys.identity(TALLY), roots=keys.roots())
        for _ in range(replicas)
    ]
    try:
        for replica in started:
            await replica.start()
        async with MeshClient(settings, ingress, roots=keys.roots()) as client:
            yield TallyMesh(settings, client, started)
    finally:
        for replica in started:
            await replica.drain()
