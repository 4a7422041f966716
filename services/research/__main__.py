"""``python -m services.research``: every role of the research mesh, each its own process,
until Ctrl-C or SIGTERM (``jetmesh launch services.research``)."""

from jetmesh.cli import launch

if __name__ == "__main__":
    launch("services.research")
