"""Load tests for jetmesh: what one mesh hop costs, measured against a physical floor.

The floor is a bare nats-py request/reply between two separate OS processes on this
machine (256-byte payload, 64 requests in flight, uvloop on both sides). Other
benchmarks are run in the same process with the same driver and reported as a ratio
of their throughput to the floor's, so the figure travels between machines.

Modules:
    stats: ``LatencyRecorder`` (HdrHistogram, microseconds), ``RunResult`` and table
        formatting with a ratio line.
    driver: ``drive``, which keeps a fixed number of requests in flight, bounded in
        count and time.
    servers: ``nats_server``, a throwaway loopback nats-server with JetStream.
    floor: the floor benchmark (responder subprocess and requester).
    research_shape: research-shaped agents (fan-out, critic loop) whose side effects are
        counted in Redis by workflow and step.
    chaos: those agents as processes under random SIGKILLs, with a report of workflows
        and tasks lost or duplicated (``make chaos``).
    chaos_support: the support mesh with refunds while agent processes, nats-server and
        redis-server are SIGKILLed (``make chaos-support``); support_fleet starts and kills
        its processes, support_audit counts what the run left behind.

Run the floor alone against a throwaway server::

    .venv/bin/python -m loadtest.floor
    .venv/bin/python -m loadtest.floor --requests 50000 --in-flight 64
"""
