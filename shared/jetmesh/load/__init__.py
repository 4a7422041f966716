"""Load testing as a product: scenario files, open-loop arrival models, a driver that
sends through the mesh's ingress (``nats``) or the HTTP gateway (``http``), and a
``report.json`` with latencies, a per-second timeline and SLO verdicts.

- :mod:`.report`: :class:`LoadReport` and its parts, written and read as JSON.
- :mod:`.breakdown`: each role's queueing, handling and share of the end-to-end time,
  from the event log (:func:`role_shares`): which agent is the bottleneck.

``jetmesh load`` (:mod:`jetmesh.cli.load`) is the command line over these names. The
extra libraries (hdrhistogram, matplotlib) come with the ``load`` extra
(``pip install 'jetmesh[load]'``) and are imported only where needed.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> report = read_report(Path("out/report.json"))  # doctest: +SKIP
    >>> report.latency_ms["p99"], report.verdict        # doctest: +SKIP
    (12.4, 'pass')
"""

from .breakdown import role_shares, shares_from_trees
from .report import LoadReport, RoleShare, SloResult, Window, read_report, write_report

__all__ = [
    "LoadReport",
    "RoleShare",
    "SloResult",
    "Window",
    "read_report",
    "role_shares",
    "shares_from_trees",
    "write_report",
]
