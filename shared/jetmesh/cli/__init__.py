"""The ``jetmesh`` command line, and the pieces a mesh's own entry point is built from.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

- :func:`run_forever` runs a module's agents until a signal
  (``python -m services.support.kb``); :func:`launch` runs a mesh package
  (:class:`MeshPackage`), one process per role (``python -m services.support``).
- :func:`cli_client` and :func:`admin_client`: a client as the ``cli`` ingress
  (:data:`CLI_IDENTITY`) or as the admin.
- :func:`agents_table`: ``jetmesh agents``'s table of the replicas that answer.
- :func:`up_servers`, :func:`cluster_settings`, :func:`decide`, :func:`render_workflow`:
  ``jetmesh up`` (and the settings of ``--cluster``),
  ``jetmesh approve``/``deny`` and ``jetmesh events`` as functions.
- :data:`console`, :func:`run_async`, :func:`settings`, :func:`markup`: the commands' console,
  async entry point, settings from the environment and escaping of shown data, for a
  mesh's own command line (services/demo).

Example:
    >>> if __name__ == "__main__":      # doctest: +SKIP
    ...     launch("services.support")
"""

from .agents import agents_table
from .app import app, main
from .approve import decide
from .common import console, run_async, settings
from .events import render as render_workflow
from .ingress import CLI_IDENTITY, admin_client, cli_client
from .launch import MeshPackage, launch
from .render import markup
from .run import run_forever
from .servers import cluster_settings, up_servers

__all__ = [
    "CLI_IDENTITY",
    "MeshPackage",
    "admin_client",
    "agents_table",
    "app",
    "cli_client",
    "cluster_settings",
    "console",
    "decide",
    "launch",
    "main",
    "markup",
    "render_workflow",
    "run_async",
    "run_forever",
    "settings",
    "up_servers",
]
