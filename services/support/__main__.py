"""``python -m services.support``: every role of the support mesh, each its own process
(``jetmesh run services.support.<role>:agent``), and the tool gateway
(``services.toolgate``), until Ctrl-C or SIGTERM."""

from __future__ import annotations

from services.launch import launch
from services.support import ROLES, TOOLGATE

if __name__ == "__main__":
    launch("services.support", ROLES, extra={"toolgate": TOOLGATE})
