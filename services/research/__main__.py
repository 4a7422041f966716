"""``python -m services.research``: every role of the research mesh, each its own process
(``jetmesh run services.research.<role>:agent``), until Ctrl-C or SIGTERM."""

from __future__ import annotations

from services.launch import launch
from services.research import ROLES

if __name__ == "__main__":
    launch("services.research", ROLES)
