"""The HTTP gateway: other systems start workflows and follow them over HTTP.

An ASGI app (FastAPI) that is an ingress of the mesh: it authenticates the HTTP caller (an
API key or a JWT from a configured issuer), mints that caller's token, starts the
workflow's delegation chain and sends the task. docs/gateway.md describes every route.

Run it with ``python -m services.gateway``; build it in a test with :func:`create_app`.
"""

from .app import create_app
from .settings import ApiKey, GatewaySettings, JwtIssuer, Webhook

__all__ = ["ApiKey", "GatewaySettings", "JwtIssuer", "Webhook", "create_app"]
