"""``python -m services.support``: every role of the support mesh and its tool gateway, each
its own process, until Ctrl-C or SIGTERM (``jetmesh launch services.support``)."""

from jetmesh.cli import launch

if __name__ == "__main__":
    launch("services.support")
