"""Time validity of certificates and tokens (``nbf``/``iat`` .. ``exp``), at a chosen time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .._exceptions import RejectedMessage


def check_validity(
    what: str,
    claims: Mapping[str, Any],
    at: float | None,
    leeway_s: float,
    error: type[RejectedMessage],
    *,
    check_not_before: bool = True,
) -> None:
    """Raise ``error`` unless ``claims`` are valid at ``at`` (default now) within the leeway.

    ``check_not_before=False`` checks expiry only.
    """
    when = time.time() if at is None else at
    try:
        expires = float(claims["exp"])
        not_before = float(claims.get("nbf", claims["iat"]))
    except (KeyError, TypeError, ValueError):
        raise error(f"{what} has no valid exp/iat") from None
    if expires + leeway_s < when:
        raise error(f"{what} expired {when - expires:.0f}s before use")
    if check_not_before and not_before - leeway_s > when:
        raise error(f"{what} not valid for another {not_before - when:.0f}s")
