"""``python -m services.gateway``: the HTTP gateway on uvicorn (uvloop, httptools).

Settings: ``JETMESH_GATEWAY_*`` and the TOML file ``JETMESH_GATEWAY_CONFIG`` names
(:class:`~services.gateway.GatewaySettings`); the mesh's servers and keys: ``JETMESH_*``.
uvicorn handles SIGINT and SIGTERM: it stops taking requests, finishes those in flight,
then the app's lifespan closes the gateway's connection (:func:`~.process.serve`).
"""

from __future__ import annotations

from jetmesh import MeshSettings
from jetmesh.runtime import settle_heap

from .app import create_app
from .gateway import Gateway
from .process import serve
from .settings import GatewaySettings


def main() -> None:
    settings, mesh = GatewaySettings(), MeshSettings()
    app = create_app(Gateway(settings, mesh))
    settle_heap(mesh.gc_young_threshold)  # as every process jetmesh starts
    serve(app, settings.host, settings.port)


if __name__ == "__main__":
    main()
