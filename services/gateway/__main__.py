"""``python -m services.gateway``: the HTTP gateway on uvicorn (uvloop, httptools).

Settings: ``JETMESH_GATEWAY_*`` and the TOML file ``JETMESH_GATEWAY_CONFIG`` names
(:class:`~services.gateway.GatewaySettings`); the mesh's servers and keys: ``JETMESH_*``.
uvicorn handles SIGINT and SIGTERM: it stops taking requests, finishes those in flight,
then the app's lifespan closes the gateway's connection.
"""

from __future__ import annotations

import uvicorn

from jetmesh import MeshSettings

from .app import create_app
from .gateway import Gateway
from .settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    app = create_app(Gateway(settings, MeshSettings()))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="info",
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
