"""``python -m services.support``: every role of the support mesh, each its own process
(``jetmesh run services.support.<role>:agent``), and the tool gateway
(``services.toolgate``), until Ctrl-C or SIGTERM.

Without ``JETMESH_TOOL_SECRETS_FILE``, the gateway gets ``<state_dir>/secrets/tools.toml``,
written with a random credential per tool when missing: the desk's stand-ins accept any
(set the variable to a file of real credentials for real systems)."""

from __future__ import annotations

from jetmesh import MeshSettings
from services.launch import launch
from services.support import ROLES, TOOLGATE
from services.toolgate import write_secrets

if __name__ == "__main__":
    settings = MeshSettings()
    if settings.tool_secrets_file is None:
        secrets = settings.state_dir / "secrets" / "tools.toml"
        if not secrets.exists():
            write_secrets(secrets)
        print(f"toolgate      credentials for the desk's stand-ins: {secrets}", flush=True)
        settings = settings.model_copy(update={"tool_secrets_file": secrets})
    launch("services.support", ROLES, extra={"toolgate": TOOLGATE}, settings=settings)
