"""Running agents in a process: their identities, one replica each, a drain at the end.

:func:`serve` is the async entry point; the event loop is started at the edge (``jetmesh
run``, :func:`jetmesh.cli.run.run_forever`). With ``handle_signals`` (the default) it stops
on SIGTERM or SIGINT, as ``jetmesh run`` does; an embedding process that handles its own
signals passes ``handle_signals=False`` and sets ``stop`` itself.

With ``health_port`` set, the process answers ``/healthz``, ``/readyz`` and ``/metrics``
(:mod:`jetmesh.runtime.health`, :mod:`jetmesh.telemetry.metrics`: the meter provider is
installed here) from before its replicas start until after they drained;
``/readyz`` says each replica's state (:func:`replica_state`), ``draining`` for all as soon
as ``stop`` is set, so that a probe takes the process out of service before the drain ends.

Example:
    >>> stop = asyncio.Event()                                              # doctest: +SKIP
    >>> running = asyncio.create_task(                                      # doctest: +SKIP
    ...     serve([agent], settings, handle_signals=False, stop=stop))
    >>> stop.set()                                                          # doctest: +SKIP
    >>> await running                                                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Sequence

from .._exceptions import ConfigError
from ..addresses import Subjects
from ..identity.keystore import KeyStore
from ..models import prices_from, provider_from
from ..settings import MeshSettings
from ..telemetry import metrics, traces
from .agent import Agent
from .health import READY, Exposition, HealthServer
from .model_steps import Models
from .parent import stop_when_orphaned
from .replica import Replica, ReplicaState

log = logging.getLogger("jetmesh.runner")


def load_agent(target: str) -> Agent:
    """Import ``module:attribute`` and return the :class:`Agent` it names.

    Raises:
        ConfigError: the target is malformed or is not an Agent.
    """
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"expected module:attribute, got {target!r}")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {target}: {exc}") from None
    if not isinstance(obj, Agent):
        raise ConfigError(f"{target} is a {type(obj).__name__}, not a jetmesh Agent")
    return obj


def make_replica(agent: Agent, settings: MeshSettings, models: Models | None = None) -> Replica:
    """A replica of ``agent`` with its identity from the keys directory (issued on the spot
    in development, when the root key is present), and the process's model provider (its
    own if ``models`` is None)."""
    store = KeyStore(settings.resolved_keys_dir)
    identity = store.ensure(
        agent.name,
        subjects=Subjects(settings.subject_prefix),
        ttl_s=settings.cert_ttl_s,
        scopes=agent.scopes,
    )
    return Replica(agent, settings, identity, roots=store.roots(), models=models)


async def serve(
    agents: Sequence[Agent],
    settings: MeshSettings,
    *,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
    parent: int | None = None,
) -> None:
    """Run one replica of each agent until ``stop`` is set, then drain them.

    Args:
        handle_signals: set ``stop`` on SIGTERM or SIGINT (handlers on the running loop,
            removed on return); False for a process that handles its own signals.
        stop: the event that ends the run (a new one by default).
        parent: the pid of the process that started this one: ``stop`` is set once it
            is gone (:mod:`jetmesh.runtime.parent`); None: not watched.

    Raises:
        ConfigError: a replica cannot start, nats-server shut a role out, or the health
            endpoints cannot listen on ``health_host:health_port``.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, _stopping, sig, stop)
    watching: asyncio.Task[None] | None = None
    models = Models(provider_from(settings), prices_from(settings))  # one per process
    replicas = [make_replica(a, settings, models) for a in agents]
    traces.install_tracing(
        "+".join(a.name for a in agents), replicas[0].instance if replicas else ""
    )
    health: HealthServer | None = None
    meters = metrics.install([a.name for a in agents], prometheus=settings.health_port is not None)
    try:
        if parent is not None:
            watching = asyncio.create_task(stop_when_orphaned(parent, stop), name="jetmesh-parent")
        if settings.health_port is not None:
            health = HealthServer(
                lambda: readiness(replicas, stopping=stop.is_set()),
                host=settings.health_host,
                port=settings.health_port,
                metrics=_exposition(meters),
            )
            await health.start()
            print(
                f"health: {health.url}/healthz {health.url}/readyz {health.url}/metrics",
                flush=True,
            )
        if not await _start_unless_stopped(replicas, stop):
            log.info("stopped while starting (servers not reached yet)")
            return
        print("ready: " + ", ".join(f"{r.agent.name}/{r.instance}" for r in replicas), flush=True)
        await _until_stopped_or_shut_out(replicas, stop)
    finally:
        await asyncio.gather(*(_drain(r) for r in replicas))
        await models.provider.aclose()
        await asyncio.to_thread(metrics.flush)  # push the last figures (OTLP)
        await asyncio.to_thread(traces.shutdown_tracing)  # export the last spans
        if health is not None:
            await health.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
        if watching is not None:
            watching.cancel()


def _stopping(sig: signal.Signals, stop: asyncio.Event) -> None:
    """A signal's handler: say it came (once), then stop (the replicas drain)."""
    if not stop.is_set():
        log.info("%s: draining", sig.name)
    stop.set()


def _exposition(meters: metrics.Installed | None) -> Exposition | None:
    """``/metrics``'s source: the installed provider's registry."""
    if meters is None:
        return None
    registry = meters.registry
    return lambda: (metrics.exposition(registry), metrics.CONTENT_TYPE)


def replica_state(replica: Replica) -> str:
    """What ``/readyz`` says of a replica: ``running`` (started, bound to its consumer, its
    NATS connection up) or why not: ``starting``, ``reconnecting``, ``disconnected``,
    ``shut out`` (its credentials refused), ``draining``, ``stopped``."""
    if replica.state is ReplicaState.NEW:
        return "starting"
    if replica.state is ReplicaState.DRAINING:
        return "draining"
    if replica.state is ReplicaState.STOPPED:
        return "stopped"
    if replica.mesh.shut_out.is_set():
        return "shut out"
    nc = replica.mesh.nc
    if nc.is_draining:
        return "draining"
    if nc.is_reconnecting:
        return "reconnecting"
    if not nc.is_connected:
        return "disconnected"
    return READY


def readiness(replicas: Sequence[Replica], *, stopping: bool = False) -> dict[str, str]:
    """Each replica's state by its role's name (:func:`replica_state`); all ``draining``
    once the process is ``stopping``, before the replicas begin to drain."""
    return {
        r.agent.name: "draining"
        if stopping and r.state is not ReplicaState.STOPPED
        else replica_state(r)
        for r in replicas
    }


async def _start_unless_stopped(replicas: Sequence[Replica], stop: asyncio.Event) -> bool:
    """Start the replicas in turn; False if ``stop`` is set first (a SIGTERM while the
    servers are still away: starting waits for them, reconnecting without end).

    Raises:
        ConfigError: a replica cannot start (its identity, its servers' refusal).
    """

    async def start_all() -> None:
        for replica in replicas:
            await replica.start()

    starting = asyncio.ensure_future(start_all())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if starting.done():
        starting.result()
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    return False


async def _until_stopped_or_shut_out(replicas: Sequence[Replica], stop: asyncio.Event) -> None:
    """Wait for a stop signal, or for nats-server to shut a replica's role out.

    Raises:
        ConfigError: a replica's credentials are refused now (its key revoked, its role
            shut out of the servers): the process stops instead of retrying for ever.
    """
    waits = [asyncio.ensure_future(stop.wait())]
    waits += [asyncio.ensure_future(r.mesh.shut_out.wait()) for r in replicas]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    shut = [r.agent.name for r in replicas if r.mesh.shut_out.is_set()]
    if shut and not stop.is_set():
        raise ConfigError(
            f"nats-server no longer accepts the credentials of {', '.join(shut)} (shut out "
            "by `jetmesh keys revoke`; `jetmesh keys rotate` and `jetmesh up` let it back in)"
        )


async def _drain(replica: Replica) -> None:
    try:
        await replica.drain()
    except Exception as exc:  # one that never finished starting has little to drain
        log.debug("drain of %s: %s", replica.agent.name, exc)
