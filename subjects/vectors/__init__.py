"""Conformance vectors: messages with the verdict and reason code a receiver must give.

Usage::

    python -m subjects.vectors            # write subjects/vectors/*.json
    python -m subjects.vectors --check    # exit 1 listing stale, missing or extra files

Every key comes from a fixed seed and every time from the file's ``now``, so the files are
the same on every run (Ed25519 signatures are deterministic). The JWTs are built here claim
for claim as jetmesh mints them, with fixed ``jti``; the Merkle paths are computed here from
the scheme's definition, independently of jetmesh's own tree code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ..generate import Output, run
from .chains import LINK_TYPE, TRIAGE, chains, digest, link
from .common import (
    BILLING,
    CERT_TYP,
    EVENT_SUBJECT,
    GATEWAY,
    HINT,
    KB,
    LIMITS,
    MERKLE_DOMAIN,
    NOW,
    OLD,
    OTHER_ROOT,
    PREFIX,
    ROOT,
    SCHEME_ED25519,
    SCHEME_MERKLE,
    STRAY,
    UNREGISTERED,
    VECTORS_DIR,
    WORKFLOW,
    Case,
    b64e,
    caller_token,
    case,
    certificate,
    event,
    file_header,
    merkle,
    seed,
    signed,
    ulid,
)
from .envelopes import envelopes
from .signatures import signatures
from .tokens import tokens

__all__ = [
    "ABOUT",
    "BILLING",
    "CERT_TYP",
    "EVENT_SUBJECT",
    "GATEWAY",
    "HINT",
    "KB",
    "LIMITS",
    "LINK_TYPE",
    "MERKLE_DOMAIN",
    "NOW",
    "OLD",
    "OTHER_ROOT",
    "PREFIX",
    "ROOT",
    "SCHEME_ED25519",
    "SCHEME_MERKLE",
    "STRAY",
    "TRIAGE",
    "UNREGISTERED",
    "VECTORS_DIR",
    "WORKFLOW",
    "Case",
    "b64e",
    "caller_token",
    "case",
    "certificate",
    "chains",
    "digest",
    "envelopes",
    "event",
    "file_header",
    "link",
    "main",
    "merkle",
    "output",
    "problems",
    "render",
    "seed",
    "signatures",
    "signed",
    "tokens",
    "ulid",
]

ABOUT: Final = (
    "jetmesh conformance vectors: see 'Conformance vectors' in subjects/README.md. Verify "
    "each case's message (UTF-8 bytes) received on subject with headers, at time now "
    "(also the stream's storage time), with roots trusted and registry as the MESH_KEYS "
    "bucket; expect verdict and reason."
)


def render() -> dict[str, str]:
    """Every vector file by name, and its content."""
    files = {
        "signatures.json": signatures(),
        "envelopes.json": envelopes(),
        "tokens.json": tokens(),
        "chains.json": chains(),
    }
    return {
        name: json.dumps({"about": ABOUT} | content, indent=2, sort_keys=True) + "\n"
        for name, content in files.items()
    }


def output() -> Output:
    """The vector files, as an :class:`~subjects.generate.Output`."""
    return Output(render(), owned=("*.json",), label="vectors/")


def problems(root: Path = VECTORS_DIR) -> list[str]:
    """Differences between :func:`render` and the files under ``root``, one line each."""
    return output().problems(root)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        argv,
        prog="python -m subjects.vectors",
        doc=__doc__,
        root=VECTORS_DIR,
        output=output,
        noun="vector files",
        hint=HINT,
    )
