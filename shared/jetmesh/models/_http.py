"""POSTing JSON to a model API with bounded retries: shared by the HTTP providers.

Retried: connection errors, timeouts, 408, 409, 429 and 5xx (529 "overloaded" included),
up to ``max_retries`` times, waiting as the server asks (``retry-after-ms``, ``Retry-After``
in seconds or as an HTTP date) or else with exponential backoff and jitter. Anything else
is the request's fault and is raised at once as :class:`~jetmesh.ModelError`, with the
message from the provider's error body.

A streamed answer (:meth:`JsonPoster.stream`, server-sent events) is retried the same way
until its status says it began; once it began, a broken stream is not retried (what was
handed on cannot be taken back): it fails with :class:`~jetmesh.ModelUnavailable`.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from typing import Any, Final, NamedTuple

import httpx
import msgspec

from .._exceptions import ModelError, ModelUnavailable

RETRY_STATUSES: Final = frozenset({408, 409, 429})
"""Besides 5xx: statuses that say "try again" rather than "this request is wrong"."""

MAX_RETRY_AFTER_S: Final = 60.0
"""A server asking for a longer wait than this gets no retry: the call fails at once
with :class:`~jetmesh.ModelUnavailable`, and the task's own retry takes over."""

MAX_BACKOFF_S: Final = 8.0


class JsonPoster:
    """One provider's HTTP client: base URL, fixed headers, timeout and retry policy."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: dict[str, str],
        *,
        timeout_s: float,
        max_retries: int,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._client = httpx.AsyncClient(
            headers={"content-type": "application/json", **headers},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, path: str, payload: dict[str, Any]) -> bytes:
        """POST ``payload`` to ``base_url + path``; the body of the 2xx answer.

        Raises:
            ModelError: a status that retrying cannot fix (400, 401, 403, 404, ...).
            ModelUnavailable: no usable answer after the retries.
        """
        url = self.base_url + path
        data = msgspec.json.encode(payload)
        for attempt in range(self.max_retries + 1):
            status = 0
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await self._client.post(url, content=data)
            except (TimeoutError, httpx.TimeoutException):
                failure, wait = f"no answer within {self.timeout_s:g} s", None
            except httpx.TransportError as exc:
                failure, wait = f"cannot reach {url}: {exc or type(exc).__name__}", None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response.content
                failure, wait = self._refused(response)
            if attempt == self.max_retries:
                tries = f"{attempt + 1} tr{'y' if attempt == 0 else 'ies'}"
                raise ModelUnavailable(self.provider, f"{failure} ({tries})", status=status)
            await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, response: httpx.Response) -> tuple[str, float | None]:
        """What a non-2xx answer says, and how long it asks to wait before a retry.

        Raises:
            ModelError: a status that retrying cannot fix.
            ModelUnavailable: it asks for a wait over :data:`MAX_RETRY_AFTER_S`.
        """
        status = response.status_code
        failure = error_message(response)
        if status not in RETRY_STATUSES and status < 500:
            raise ModelError(self.provider, failure, status=status)
        wait = retry_after(response)
        if wait is not None and wait > MAX_RETRY_AFTER_S:
            raise ModelUnavailable(
                self.provider, f"{failure}; asked to wait {wait:g} s", status=status
            )
        return failure, wait

    async def stream(self, path: str, payload: dict[str, Any]) -> AsyncGenerator[ServerEvent]:
        """POST ``payload`` and yield the server-sent events of the 2xx answer as they come.

        Raises:
            ModelError: as :meth:`post`.
            ModelUnavailable: no answer began after the retries, or the stream broke.
        """
        url = self.base_url + path
        data = msgspec.json.encode(payload)
        for attempt in range(self.max_retries + 1):
            status = 0
            async with AsyncExitStack() as stack:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        response = await stack.enter_async_context(
                            self._client.stream(
                                "POST", url, content=data, headers={"accept": "text/event-stream"}
                            )
                        )
                        if not 200 <= response.status_code < 300:
                            await response.aread()
                except (TimeoutError, httpx.TimeoutException):
                    failure, wait = f"no answer within {self.timeout_s:g} s", None
                except httpx.TransportError as exc:
                    failure, wait = f"cannot reach {url}: {exc or type(exc).__name__}", None
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        async for event in _events(self.provider, response):
                            yield event
                        return
                    failure, wait = self._refused(response)
            if attempt == self.max_retries:
                tries = f"{attempt + 1} tr{'y' if attempt == 0 else 'ies'}"
                raise ModelUnavailable(self.provider, f"{failure} ({tries})", status=status)
            await asyncio.sleep(wait if wait is not None else self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_s * 2.0**attempt, MAX_BACKOFF_S)
        return delay * (0.5 + random.random() / 2)  # jitter, not secrecy


class ServerEvent(NamedTuple):
    """One server-sent event: its ``event:`` name ("" when none) and its ``data:``."""

    event: str
    data: str


async def _events(provider: str, response: httpx.Response) -> AsyncGenerator[ServerEvent]:
    """The server-sent events of ``response``'s body (lines ``event:`` and ``data:``, an
    empty line ending each; comments and other fields ignored).

    Raises:
        ModelUnavailable: the connection broke or timed out mid-stream.
    """
    name, data = "", list[str]()
    try:
        async for line in response.aiter_lines():
            if not line:
                if data:
                    yield ServerEvent(name, "\n".join(data))
                name, data = "", []
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise ModelUnavailable(
            provider, f"the stream broke after it began: {exc or type(exc).__name__}", status=200
        ) from None
    if data:
        yield ServerEvent(name, "\n".join(data))


def error_message(response: httpx.Response) -> str:
    """The provider's own words: ``error.type: error.message`` from the JSON error body
    (OpenAI's and Anthropic's shapes), else the start of the body as text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message") or "")
        kind = str(error.get("type") or error.get("code") or "")
        if message:
            return f"{kind}: {message}" if kind else message
    text = response.text.strip().replace("\n", " ")
    return text[:300] or f"HTTP {response.status_code} {response.reason_phrase}"


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait, from ``retry-after-ms`` or ``Retry-After``."""
    millis = response.headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def decode(provider: str, data: bytes, type_: type[Any]) -> Any:
    """The answer decoded as ``type_``.

    Raises:
        ModelError: not JSON, or not the shape the provider documents.
    """
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.DecodeError as exc:
        preview = data[:120].decode("utf-8", "replace")
        raise ModelError(provider, f"unreadable answer ({exc}): {preview!r}", status=200) from None
