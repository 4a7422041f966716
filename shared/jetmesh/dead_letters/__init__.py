"""Dead letters: a refused or failed message, kept with its reason on
``<prefix>.dlq.<agent>`` (stream ``MESH_DLQ``), read back, and sent again once fixed.

- :mod:`.headers`: what a dead letter keeps of the original's headers, and the
  ``Mesh-Dlq-*`` headers that say why.
- :mod:`.publishing`: storing a dead letter, and giving up on one that cannot be stored.
- :mod:`.refusals`: refusing a message (dead letter and ``rejected`` event), and the error
  reply to a failed task's caller.
- :mod:`.reading`: a dead letter as stored, listed and read by its sequence.
- :mod:`.redrive`: verifying a dead letter as its role's original task and sending it
  again.
- :mod:`.settle`: a person's finding on a side effect left in doubt, carried out.

``jetmesh dlq`` (:mod:`jetmesh.cli.dlq`) is the command line over these names.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> letters = await list_dead_letters(admin, stream, "mesh.dlq.>")  # doctest: +SKIP
    >>> task = await redrive(cli, letters[0], operator=admin)           # doctest: +SKIP
"""

from .headers import (
    AGENT_HEADER,
    DETAIL_HEADER,
    KEPT_HEADERS,
    MAX_DETAIL,
    MAX_KEPT_VALUE,
    MAX_MESSAGE_ID,
    MSG_ID_HEADER,
    REASON_HEADER,
    SUBJECT_HEADER,
    TASK_SEQ_HEADER,
    TIME_HEADER,
    dead_letter_headers,
    header_text,
    refused_message_id,
)
from .publishing import (
    DEAD_LETTER_FAILED,
    DEAD_LETTER_TIMEOUT_S,
    UNVERIFIED_WORKFLOW,
    DeadLettering,
    audit_workflow,
    dead_letter,
    dead_letter_failed,
)
from .reading import DeadLetter, get_dead_letter, list_dead_letters, with_task
from .redrive import REDRIVE_REFUSED, REDRIVEN, Operating, Redriving, redrive, verify_original
from .refusals import error_reply, reject
from .settle import SETTLED, Settled, claims_in_doubt, settle

__all__ = [
    "AGENT_HEADER",
    "DEAD_LETTER_FAILED",
    "DEAD_LETTER_TIMEOUT_S",
    "DETAIL_HEADER",
    "KEPT_HEADERS",
    "MAX_DETAIL",
    "MAX_KEPT_VALUE",
    "MAX_MESSAGE_ID",
    "MSG_ID_HEADER",
    "REASON_HEADER",
    "REDRIVEN",
    "REDRIVE_REFUSED",
    "SETTLED",
    "SUBJECT_HEADER",
    "TASK_SEQ_HEADER",
    "TIME_HEADER",
    "UNVERIFIED_WORKFLOW",
    "DeadLetter",
    "DeadLettering",
    "Operating",
    "Redriving",
    "Settled",
    "audit_workflow",
    "claims_in_doubt",
    "dead_letter",
    "dead_letter_failed",
    "dead_letter_headers",
    "error_reply",
    "get_dead_letter",
    "header_text",
    "list_dead_letters",
    "redrive",
    "refused_message_id",
    "reject",
    "settle",
    "verify_original",
    "with_task",
]
