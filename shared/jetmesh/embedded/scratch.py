"""Scratch directories of runs that start servers and agents, and what a run killed outright
leaves of them.

A load run, a benchmark or a fault run keeps its servers' data, its keys and its logs in a
temporary directory and removes it on the way out. Killed outright (SIGKILL, the OOM
killer), it has no way out: its servers and agents stop by themselves (they watch for
their owner: :mod:`jetmesh.embedded.guard`, :mod:`jetmesh.runtime.parent`), but the
directory stays, with the streams' and Redis's files in it. So a scratch directory names
its owner in a file (the owner's host, pid and start time, which together name one process
even after the pid is given to another), and making one first removes, in the same parent
directory, the scratch directories whose owner is gone, as pytest removes its old base
temporaries. A directory without that file, or made on another host (a container sharing
the directory, whose processes this one cannot see), is never touched.

Example:
    >>> with scratch_dir("jetmesh-doc-") as path:
    ...     owner_of(path) == os.getpid()
    True
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .pids import pid_alive, start_time

OWNER_FILE = ".jetmesh-owner"
"""In a scratch directory: ``<pid> <start time> <host>`` of the process that made it."""


@contextlib.contextmanager
def scratch_dir(prefix: str, *, parent: Path | None = None) -> Iterator[Path]:
    """A new directory under ``parent`` (the system's temporary directory), named
    ``<prefix><random>`` and owned by this process, removed with what it holds after the
    block. Before it is made, the scratch directories under ``parent`` whose owner is gone
    are removed (:func:`sweep`).
    """
    sweep(parent)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        pid = os.getpid()
        written = path / f"{OWNER_FILE}.new"  # never seen half written
        written.write_text(f"{pid} {start_time(pid) or '-'} {socket.gethostname()}\n")
        written.replace(path / OWNER_FILE)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owner_of(path: Path) -> int | None:
    """The pid of the process that made scratch directory ``path`` if that process is still
    running; None if it is gone, ``path`` is not a scratch directory, or another host
    made it."""
    owner = _owner(path)
    return owner[0] if owner is not None and _running(*owner) else None


def _owner(path: Path) -> tuple[int, str] | None:
    """The pid and start time written in ``path``'s owner file, if it names a process of
    this host; None without one, or for another host's."""
    try:
        pid_text, started, host = (path / OWNER_FILE).read_text().split(maxsplit=2)
        if host.strip() != socket.gethostname():
            return None
        return int(pid_text), started
    except (OSError, ValueError):
        return None


def _running(pid: int, started: str) -> bool:
    return pid_alive(pid) and (started == "-" or start_time(pid) == started)


def sweep(parent: Path | None = None) -> list[Path]:
    """Remove the scratch directories under ``parent`` (the system's temporary directory)
    that this user's processes made and that outlived them; the paths removed. Directories
    without an owner file, of another user or made on another host are left alone."""
    root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    uid = os.getuid()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                continue
        except OSError:
            continue
        owner = _owner(path)
        if owner is not None and not _running(*owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
