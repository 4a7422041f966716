"""``python -m services.toolgate``: run a replica of the tool gateway until Ctrl-C or
SIGTERM (start it again for another replica)."""

from __future__ import annotations

from jetmesh import run_forever
from services.toolgate import agent

if __name__ == "__main__":
    run_forever([agent])
