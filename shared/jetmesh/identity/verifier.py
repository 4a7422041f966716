"""Verification of every incoming message, before any user code sees it.

Order of checks (cheapest and most damning first)::

    size -> signature headers -> certificate (key id) -> signature over the raw bytes
    -> envelope JSON -> sender is the certificate's owner -> sender may publish here
    -> subject matches ``to`` (and ``workflow``, on event subjects) -> not stale / not
    from the future -> not a replay
    -> caller token (optional only on events) -> delegation chain (tasks)

Nothing is re-serialised before the signature check: the signature covers the exact bytes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

from .._exceptions import BadSignature as BadSignatureError
from .._exceptions import (
    Malformed,
    Misaddressed,
    Oversized,
    PlanTooDeep,
    RejectedMessage,
    Replayed,
    Stale,
    Unsigned,
)
from ..addresses import TOKEN_RE, Subjects, expected_kinds, subject_matches
from ..envelope import Envelope, decode_envelope
from .certificates import Certificate
from .delegation import Delegation
from .signing import (
    KEY_HEADER,
    KNOWN_SCHEMES,
    PATH_HEADER,
    SCHEME_ED25519,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    RootCache,
    signature_valid,
)
from .tokens import Caller
from .trust import TrustStore
from .untrusted import shown

MSG_ID_HEADER = "Nats-Msg-Id"

MAX_HEADER_BYTES = 8192
"""Largest total of header names and values accepted. A sender's own headers (message id,
signature, Merkle path, trace context) take a few hundred bytes."""


class Verified(NamedTuple):
    envelope: Envelope
    certificate: Certificate
    caller: Caller | None
    """None only for an event or an error reply that acts for no caller (the audit of a
    refused message, the answer to a task whose caller token was refused)."""
    delegation: Delegation | None = None
    """Tasks: what their verified delegation chain hands to the addressee."""


class SeenSet:
    """Envelope ids seen recently, forgotten after ``ttl_s`` (the staleness limit)."""

    def __init__(self, ttl_s: float, max_size: int = 200_000) -> None:
        self._ttl = ttl_s
        self._max = max_size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check_and_add(self, msg_id: str, now: float) -> bool:
        """Record ``msg_id``; False if it was already recorded."""
        seen = self._seen
        while seen:
            oldest_id, expiry = next(iter(seen.items()))
            if expiry > now and len(seen) < self._max:
                break
            del seen[oldest_id]
        if msg_id in seen:
            return False
        seen[msg_id] = now + self._ttl
        return True


class Verifier:
    """Checks signatures, identity, addressing, freshness and replay of incoming messages."""

    def __init__(
        self,
        trust: TrustStore,
        subjects: Subjects,
        *,
        max_payload_bytes: int,
        max_age_s: float,
        clock_skew_s: float,
        max_call_depth: int = 8,
    ) -> None:
        self.trust = trust
        self._max_links = max_call_depth + 1
        self.subjects = subjects
        self._max_payload = max_payload_bytes
        self._max_age = max_age_s
        self._skew = clock_skew_s
        # An envelope stays fresh until created + max_age + skew and may arrive up to `skew`
        # before its created time (sender clock ahead): remember its id for that whole span.
        self._seen = SeenSet(max_age_s + 2 * clock_skew_s)
        self._roots = RootCache()
        self._reply_pattern = f"{subjects.prefix}.agent.*.reply.*"
        self._event_prefix = f"{subjects.prefix}.event."

    async def verify(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None,
        *,
        stored_at: float | None,
        audit: bool = False,
    ) -> Verified:
        """Verify one message and return its envelope, signer and caller.

        Args:
            subject: the subject the message arrived on.
            data: the exact bytes received.
            headers: the NATS headers received.
            stored_at: for JetStream deliveries (tasks, events), when the stream stored the
                message. Freshness is then judged at storage time, so a task may wait in the
                queue for as long as the stream keeps it, while a replay stored later is
                refused; inside the window the stream itself drops a replay by
                ``Nats-Msg-Id``. None for core NATS replies, which are judged against the
                clock and this process's seen-set.
            audit: reading history: certificates and caller tokens must have been valid
                when the message was stored, not now.

        Raises:
            RejectedMessage: a subclass naming the first check that failed; ``envelope`` is
                set on it when the envelope could be decoded.
        """
        if len(data) > self._max_payload:
            raise Oversized(f"{len(data)} bytes > limit {self._max_payload}")
        headers = headers or {}
        header_bytes = sum(len(k) + len(v) for k, v in headers.items())
        if header_bytes > MAX_HEADER_BYTES:
            raise Oversized(f"{header_bytes} bytes of headers > limit {MAX_HEADER_BYTES}")
        scheme = headers.get(SCHEME_HEADER)
        kid = headers.get(KEY_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not kid or not signature:
            missing = [
                name for name, v in ((KEY_HEADER, kid), (SIGNATURE_HEADER, signature)) if not v
            ]
            raise Unsigned(f"no {' and no '.join(missing)} header")
        if scheme not in KNOWN_SCHEMES:
            raise Unsigned(f"unknown signature scheme {shown(scheme)}")
        at = stored_at if audit else None
        cert, public = await self.trust.certificate(kid, at=at)
        if scheme == SCHEME_ED25519:
            valid = signature_valid(public, data, signature)
        else:
            valid = self._roots.merkle_valid(
                kid, public, data, signature, headers.get(PATH_HEADER, "")
            )
        if not valid:
            raise BadSignatureError(f"{scheme} signature by {kid} does not match the message")
        envelope = decode_envelope(data)
        try:
            self._check_envelope(subject, envelope, cert, headers, stored_at)
            if envelope.kind in ("event", "error") and not envelope.caller:
                return Verified(envelope, cert, None)
            caller = await self.trust.caller(envelope.caller, at=at)
            if envelope.kind != "task":
                return Verified(envelope, cert, caller)
            if len(envelope.chain) > self._max_links:
                raise PlanTooDeep(
                    f"a delegation chain of {len(envelope.chain)} links (max_call_depth "
                    f"{self._max_links - 1})",
                    step=envelope.step,
                    limit=self._max_links - 1,
                )
            delegation = await self.trust.delegation(envelope, caller, signer=cert, at=at)
        except RejectedMessage as exc:
            if envelope.sender == cert.name:  # authentic: audit in its workflow, answer it
                exc.envelope = envelope  # type: ignore[attr-defined]
            raise
        return Verified(envelope, cert, caller, delegation)

    def _check_envelope(
        self,
        subject: str,
        env: Envelope,
        cert: Certificate,
        headers: Mapping[str, str],
        stored_at: float | None,
    ) -> None:
        if not TOKEN_RE.match(env.workflow):  # it becomes a subject token of the events
            raise Malformed(f"workflow id {shown(env.workflow)} is not a subject token")
        if not TOKEN_RE.match(env.id):  # Nats-Msg-Id, and the key of a task without a step
            raise Malformed(f"envelope id {shown(env.id)} is not a subject token")
        self._check_addressing(subject, env, cert)
        now = time.time()
        received = stored_at if stored_at is not None else now
        if env.created > received + self._skew:
            raise Stale(f"created {env.created - received:.1f}s in the future")
        if env.created < received - self._max_age - self._skew:
            age = received - env.created
            raise Stale(f"created {age:.1f}s before it was received (limit {self._max_age:.0f}s)")
        if stored_at is not None:
            if headers.get(MSG_ID_HEADER) != env.id:
                raise Replayed("Nats-Msg-Id differs from the signed id (de-duplication evaded)")
        elif not self._seen.check_and_add(env.id, now):
            raise Replayed(f"envelope {env.id} already received")

    def _check_addressing(self, subject: str, env: Envelope, cert: Certificate) -> None:
        """Sender, subject, addressee, workflow, ``reply_to`` and kind agree.

        Raises:
            Misaddressed: they do not.
        """
        if env.sender != cert.name:
            raise Misaddressed(f"sender {env.sender!r} signed with {cert.name!r}'s key")
        if not cert.may_publish(subject):
            raise Misaddressed(f"{cert.name} may not publish to {subject}")
        addressee = self.subjects.addressee(subject)
        if addressee is not None and addressee != env.to:
            raise Misaddressed(f"envelope to {env.to!r} arrived on {subject}")
        if (
            subject.startswith(self._event_prefix)  # <prefix>.event.<workflow>.<kind>
            and subject[len(self._event_prefix) :].partition(".")[0] != env.workflow
        ):
            raise Misaddressed(f"an envelope of workflow {env.workflow} arrived on {subject}")
        if env.reply_to is not None and not (
            subject_matches(self._reply_pattern, env.reply_to)
            and self.subjects.addressee(env.reply_to) == env.sender
        ):
            raise Misaddressed(
                f"reply_to {env.reply_to!r} is not a reply subject of {env.sender!r}"
            )
        kinds = expected_kinds(subject)
        if kinds and env.kind not in kinds:
            raise Misaddressed(f"a {env.kind!r} envelope may not travel on {subject}")
