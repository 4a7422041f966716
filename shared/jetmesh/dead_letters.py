"""Dead letters: a refused or failed message, kept with its reason on ``<prefix>.dlq.<agent>``.

The original bytes and headers (signature included) are kept unchanged, so a dead letter can
be inspected, verified and sent back once the cause is fixed. The reason travels in
``Mesh-Dlq-*`` headers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

REASON_HEADER = "Mesh-Dlq-Reason"
DETAIL_HEADER = "Mesh-Dlq-Detail"
SUBJECT_HEADER = "Mesh-Dlq-Subject"
AGENT_HEADER = "Mesh-Dlq-Agent"
TIME_HEADER = "Mesh-Dlq-Time"
MAX_DETAIL = 1024


def dead_letter_headers(
    original: Mapping[str, str] | None,
    *,
    subject: str,
    data: bytes,
    agent: str,
    reason: str,
    detail: str,
) -> dict[str, str]:
    """Headers of a dead letter: the original ones plus the reason.

    The ``Nats-Msg-Id`` is derived from the message and the reason, so the same message
    refused twice for the same reason (a redelivery) is stored once.
    """
    headers = {k: v for k, v in (original or {}).items() if k != "Nats-Msg-Id"}
    digest = hashlib.sha256(data).hexdigest()[:32]
    headers.update(
        {
            REASON_HEADER: reason,
            DETAIL_HEADER: detail.replace("\r", " ").replace("\n", " ")[:MAX_DETAIL],
            SUBJECT_HEADER: subject,
            AGENT_HEADER: agent,
            TIME_HEADER: f"{time.time():.6f}",
            "Nats-Msg-Id": f"dlq-{agent}-{reason}-{digest}",
        }
    )
    return headers
