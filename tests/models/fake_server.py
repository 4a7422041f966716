"""A model API on 127.0.0.1 for tests: OpenAI Chat Completions and Anthropic Messages, in
their real wire formats (request checks, answers, error bodies), with scripted failures.

Every request is recorded; by default each is answered with ``echo: <last user turn>``
and word-count usage; a request with ``stream: true`` gets the same answer as server-sent
events, word by word, in the API's streaming format. Queue scripted answers with
:meth:`FakeModelServer.then` to make the next requests fail (401, 429 with ``Retry-After``,
500, malformed JSON, a slow answer).

Example:
    >>> with FakeModelServer(key="sk-test") as server:                # doctest: +SKIP
    ...     server.then(429, headers={"retry-after": "1"})
    ...     provider = OpenAIProvider(model="gpt-4o-mini", api_key="sk-test",
    ...                               base_url=server.openai_url)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@dataclass
class Scripted:
    """One scripted answer: a status, a body (a JSON-able value, raw bytes, or None for the
    API's own error body for that status), headers, and a delay before answering."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Seen:
    """A request the server received."""

    path: str
    headers: dict[str, str]
    body: Any


class FakeModelServer:
    """Both APIs on one free loopback port, in a thread."""

    def __init__(self, *, key: str = "sk-test") -> None:
        self.key = key
        self.requests: list[Seen] = []
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def then(
        self,
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> FakeModelServer:
        """Answer the next request (after those already queued) this way."""
        with self._lock:
            self._script.append(Scripted(status, body, headers or {}, delay_s))
        return self

    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r.path == path)

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- answering -------------------------------------------------------------------------

    def _next(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def answer(
        self, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], bytes, float]:
        with self._lock:
            self.requests.append(Seen(path, headers, body))
        if path == OPENAI_PATH:
            api = _OpenAI
        elif path == ANTHROPIC_PATH:
            api = _Anthropic
        else:
            return (
                404,
                {},
                b'{"error": {"message": "Not found", "type": "invalid_request_error"}}',
                0.0,
            )
        refused = api.check(self.key, headers, body)
        if refused is not None:
            return refused[0], {}, json.dumps(refused[1]).encode(), 0.0
        scripted = self._next()
        if scripted is None or (scripted.status == 200 and scripted.body is None):
            delay = scripted.delay_s if scripted else 0.0
            if body.get("stream") is True:
                return 200, {"content-type": SSE}, _sse(api.stream(body)), delay
            return 200, {}, json.dumps(api.reply(body)).encode(), delay
        data: bytes
        if isinstance(scripted.body, bytes):
            data = scripted.body
        elif scripted.body is None:
            data = json.dumps(api.error(scripted.status)).encode()
        else:
            data = json.dumps(scripted.body).encode()
        return scripted.status, scripted.headers, data, scripted.delay_s


SSE = "text/event-stream"


def _sse(events: list[tuple[str, str]]) -> bytes:
    """Server-sent events: ``event:`` (when named) and ``data:`` lines, a blank line after
    each."""
    out = []
    for name, data in events:
        out.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
    return "".join(out).encode()


def stream_words(text: str) -> list[str]:
    """The pieces the fake streams ``text`` in: each word with the space before it."""
    words = text.split(" ")
    return [words[0], *(f" {w}" for w in words[1:])]


def _last_user(body: dict[str, Any]) -> str:
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""


def _words(body: dict[str, Any]) -> int:
    text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    return len((text + " " + str(body.get("system", ""))).split())


class _OpenAI:
    """Chat Completions, as api.openai.com answers."""

    @staticmethod
    def check(key: str, headers: dict[str, str], body: Any) -> tuple[int, Any] | None:
        if headers.get("authorization") != f"Bearer {key}":
            given = headers.get("authorization", "").removeprefix("Bearer ")
            return 401, {
                "error": {
                    "message": f"Incorrect API key provided: {given[:6]}****. You can find "
                    "your API key at https://platform.openai.com/account/api-keys.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        if not isinstance(body, dict) or "model" not in body or not body.get("messages"):
            return 400, {
                "error": {
                    "message": "you must provide a model parameter",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
        return None

    @staticmethod
    def reply(body: dict[str, Any]) -> Any:
        text = f"echo: {_last_user(body)}"
        return {
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{body['model']}-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": _words(body),
                "completion_tokens": len(text.split()),
                "total_tokens": _words(body) + len(text.split()),
            },
            "system_fingerprint": "fp_44709d6fcb",
        }

    @staticmethod
    def stream(body: dict[str, Any]) -> list[tuple[str, str]]:
        """Chat Completions chunks, the usage chunk when ``stream_options.include_usage``,
        then ``[DONE]``."""
        whole = _OpenAI.reply(body)
        base = {
            "id": whole["id"],
            "object": "chat.completion.chunk",
            "created": whole["created"],
            "model": whole["model"],
            "system_fingerprint": whole["system_fingerprint"],
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[str, str]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return "", json.dumps({**base, "choices": [choice], "usage": None})

        text = whole["choices"][0]["message"]["content"]
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": piece}) for piece in stream_words(text)]
        events.append(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(("", json.dumps({**base, "choices": [], "usage": whole["usage"]})))
        events.append(("", "[DONE]"))
        return events

    @staticmethod
    def error(status: int) -> Any:
        messages = {
            429: (
                "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, "
                "Used 3, Requested 1.",
                "requests",
                "rate_limit_exceeded",
            ),
            500: (
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            503: (
                "The engine is currently overloaded, please try again later.",
                "server_error",
                None,
            ),
        }
        message, kind, code = messages.get(status, (f"HTTP {status}", "server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Anthropic:
    """Messages, as api.anthropic.com answers."""

    @staticmethod
    def check(key: str, headers: dict[str, str], body: Any) -> tuple[int, Any] | None:
        if headers.get("x-api-key") != key:
            return 401, {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            }
        if headers.get("anthropic-version") != "2023-06-01":
            return 400, {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "anthropic-version: header is required",
                },
            }
        if not isinstance(body, dict) or "max_tokens" not in body:
            return 400, {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
            }
        return None

    @staticmethod
    def reply(body: dict[str, Any]) -> Any:
        text = f"echo: {_last_user(body)}"
        return {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": f"{body['model']}-20241022",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": _words(body), "output_tokens": len(text.split())},
        }

    @staticmethod
    def stream(body: dict[str, Any]) -> list[tuple[str, str]]:
        """The Messages events: message_start, a text block's deltas, message_delta with
        the stop reason and output tokens, message_stop (and a ping)."""
        whole = _Anthropic.reply(body)
        start = {
            **whole,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": whole["usage"]["input_tokens"], "output_tokens": 1},
        }
        events = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        for piece in stream_words(whole["content"][0]["text"]):
            delta = {"type": "text_delta", "text": piece}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": whole["usage"]["output_tokens"]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return [(name, json.dumps(data)) for name, data in events]

    @staticmethod
    def error(status: int) -> Any:
        kinds = {
            429: (
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
            500: ("api_error", "Internal server error"),
            529: ("overloaded_error", "Overloaded"),
        }
        kind, message = kinds.get(status, ("api_error", f"HTTP {status}"))
        return {"type": "error", "error": {"type": kind, "message": message}}


def _handler(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, data, delay = server.answer(self.path, headers, body)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("content-type", extra.pop("content-type", "application/json"))
                self.send_header("content-length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (its timeout)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
