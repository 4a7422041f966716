"""What a cluster chaos run is asked to do and what it reports (loadtest/cluster_chaos.py):
its configuration, each Redis failover's count of acknowledged writes, and the report with
its targets and its printed form."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from loadtest.chaos_support import SupportChaosConfig, SupportChaosReport

NODES = 3


@dataclass(frozen=True)
class ClusterChaosConfig:
    """One run."""

    nats_kills: int = 30
    kill_every_s: tuple[float, float] = (5.0, 10.0)
    leader_every: int = 3
    """Every this many kills, the leader of MESH_TASKS is the node killed."""
    down_s: tuple[float, float] = (1.0, 3.0)
    """How long a killed node stays down before ``jetmesh up``."""
    redis_kills: int = 2
    freeze_s: float = 8.0
    """How long two of the three nodes stay SIGSTOPped (0: no freeze)."""
    in_flight: int = 8
    over_every: int = 25
    """One ticket in this many is over the approval limit."""
    replicas: int = 2
    max_tickets: int = 5000
    request_timeout_s: float = 60.0
    ticket_seconds: float = 300.0
    max_seconds: float = 1500.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.nats_kills < 0 or self.redis_kills < 0 or self.freeze_s < 0:
            raise ValueError("kills and freeze cannot be negative")
        if self.redis_kills > max(self.nats_kills, 1):
            raise ValueError("at most one Redis kill per NATS kill")
        if self.in_flight < 1 or self.replicas < 1 or self.leader_every < 1:
            raise ValueError("need in_flight, replicas and leader_every >= 1")

    def tickets(self) -> SupportChaosConfig:
        """The ticket load's configuration (its tickets, asks and approvals)."""
        return SupportChaosConfig(
            tickets=self.max_tickets,
            in_flight=self.in_flight,
            agent_kills=0,
            server_kills=0,
            over_limit=self.max_tickets // self.over_every,
            replicas=self.replicas,
            request_timeout_s=self.request_timeout_s,
            ticket_seconds=self.ticket_seconds,
        )


@dataclass
class Failover:
    """One kill of the Redis primary."""

    seconds: float = 0.0
    """From the kill until the Sentinels named a new primary."""
    acked: int = 0
    """INCRs the writer was told were done."""
    kept: int = 0
    """What the new primary had after."""

    @property
    def lost(self) -> int:
        return max(self.acked - self.kept, 0)


@dataclass
class ClusterChaosReport:
    """What the run did and counted."""

    tickets: SupportChaosReport
    nats_kills: Counter[str] = field(default_factory=Counter)
    leader_kills: int = 0
    failovers: list[Failover] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    probes_frozen: int = 0
    """Probe publishes sent while two nodes were frozen."""
    acked_frozen: int = 0
    """Of those, acknowledged (must be 0)."""
    recovered_s: float | None = None
    """From SIGCONT until a probe publish was acknowledged again."""
    compared: dict[str, list[int]] = field(default_factory=dict)
    """Stream -> messages on each node."""
    differences: list[str] = field(default_factory=list)

    def problems(self, config: ClusterChaosConfig) -> list[str]:
        """Each target missed, in words (empty: all held)."""
        out = self.tickets.outcome_problems()
        if self.tickets.sent == 0:
            out.append("no ticket sent")
        if sum(self.nats_kills.values()) < config.nats_kills:
            out.append("fewer NATS kills than asked")
        if len(self.failovers) < config.redis_kills:
            out.append("fewer Redis failovers than asked")
        if self.acked_frozen:
            out.append(f"{self.acked_frozen} publishes acknowledged without a quorum")
        if config.freeze_s and self.recovered_s is None:
            out.append("publishing did not recover after the freeze")
        if self.differences:
            out.append("replicas differ: " + "; ".join(self.differences[:3]))
        if not self.compared:
            out.append("no stream compared")
        return out

    def format(self, config: ClusterChaosConfig) -> str:
        t = self.tickets
        missed = self.problems(config)
        lost = sum(f.lost for f in self.failovers)
        acked = sum(f.acked for f in self.failovers)
        failovers = ", ".join(f"{f.seconds:.1f} s" for f in self.failovers) or "none"
        streams = "; ".join(
            f"{name} {'/'.join(str(n) for n in counts)}" for name, counts in self.compared.items()
        )  # (the registry: its live keys)
        return "\n".join(
            [
                f"cluster-chaos: refund tickets through the support mesh on {NODES} nats-servers "
                f"(every stream R{NODES}, sync_interval always) and Redis primary + replica + 3 "
                f"Sentinels; {config.in_flight} in flight, {config.replicas} processes per role; "
                f"seed {t.seed}; {os.cpu_count()} CPUs",
                *t.outcome_lines(),
                f"nats kills   {sum(self.nats_kills.values())} SIGKILLs every "
                f"{config.kill_every_s[0]:g}-{config.kill_every_s[1]:g} s "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.nats_kills.items()))}), "
                f"{self.leader_kills} of them the MESH_TASKS leader; each node back by "
                "jetmesh up",
                f"redis        {len(self.failovers)} primary SIGKILLs, Sentinel failover in "
                f"{failovers}; acknowledged INCRs through them {acked}, lost {lost}",
                f"quorum       {' and '.join(self.frozen) or 'no nodes'} SIGSTOPped "
                f"{config.freeze_s:g} s: {self.probes_frozen} probe publishes, "
                f"{self.acked_frozen} acknowledged; after SIGCONT acknowledged again in "
                + (f"{self.recovered_s:.1f} s" if self.recovered_s is not None else "never"),
                f"replicas     messages per node, read from each node's files: {streams}; "
                + ("identical" if not self.differences else "; ".join(self.differences)),
                f"processes    {t.processes} agent processes started, {t.left_running} left "
                "running",
                *t.open_lines(),
                f"time         {t.seconds:.1f} s ({t.load_seconds:.1f} s of load)",
                "verdict      "
                + (
                    "OK: every ticket refunded exactly once, every tool run once per step, "
                    "0 stuck, nothing acknowledged without a quorum, replicas identical"
                    if not missed
                    else "MISSED: " + "; ".join(missed)
                ),
            ]
        )
