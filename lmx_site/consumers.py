"""The base of every app's HTTP endpoints: JSON in and out, SPEC errors, recorded, never a crash.

The handler runs as a task so that the consumer keeps listening: when the client goes away,
`http.disconnect` arrives, the task is cancelled, and whatever it was generating stops.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from inference import conf, signals
from inference.errors import (
    INTERNAL,
    METHOD_NOT_ALLOWED,
    NOT_JSON,
    PATH_NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    UNAUTHORIZED,
    InvalidRequest,
    LMXError,
    error_body,
    to_lmx_error,
)
from lmx_site import api_keys, json_body, origins

log = logging.getLogger("lmx.http")

JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def sse_frame(payload: dict, event: str | None = None) -> bytes:
    """One Server-Sent Event carrying `payload` as JSON (named `event` where the API names them)."""
    named = f"event: {event}\n" if event else ""
    return f"{named}data: {json.dumps(payload)}\n\n".encode()


def header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def admin_token_ok(scope) -> bool:
    token = conf.get("LMX_ADMIN_TOKEN")
    if not token:
        return True
    given = header(scope, b"authorization") or ""
    if given.lower().startswith("bearer "):
        given = given[7:].strip()
    else:
        given = ""
    return hmac.compare_digest(given.encode(), token.encode())


async def record_error(err: LMXError, *, endpoint: str, model: str = "") -> None:
    """Announce a coded error; the error history (monitoring) records it before this returns."""
    try:
        await signals.error_occurred.asend(
            sender=JsonConsumer, error=err, endpoint=endpoint, model=model or ""
        )
    except Exception:
        log.exception("Could not record error event %s", err.code)


class DirectDispatch:
    """For LMX's consumers: Channels' dispatch first closes stale database connections on the one
    thread that runs every thread-sensitive sync call, so each message of a request waited behind
    any ORM call of the process or Django admin page being rendered. LMX reaches the ORM only
    through database_sync_to_async, which closes them on its own thread."""

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class JsonConsumer(DirectDispatch, AsyncHttpConsumer):
    methods: tuple[str, ...] = ("GET",)
    admin = False  # requires LMX_ADMIN_TOKEN when set

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._task: asyncio.Task | None = None
        self._size = 0
        self._too_large = False
        self.model_name = ""  # for error records

    @property
    def endpoint(self) -> str:
        return f"{self.scope['method']} {self.scope['path']}"

    async def http_request(self, message):
        chunk = message.get("body", b"")
        self._size += len(chunk)
        if self._size > conf.get("LMX_MAX_BODY_BYTES"):
            self._too_large = True
        elif chunk:
            self.body.append(chunk)
        if message.get("more_body"):
            return
        self._task = asyncio.get_running_loop().create_task(self._serve(b"".join(self.body)))

    async def _serve(self, body: bytes) -> None:
        try:
            if self._too_large:
                raise LMXError(
                    f"The request body exceeds {conf.get('LMX_MAX_BODY_BYTES')} bytes (LMX_MAX_BODY_BYTES).",
                    kind=PAYLOAD_TOO_LARGE,
                )
            if self.admin and not admin_token_ok(self.scope):
                raise LMXError(
                    "This endpoint needs 'Authorization: Bearer <LMX_ADMIN_TOKEN>'.", kind=UNAUTHORIZED
                )
            if self.scope["path"].startswith("/v1/") and not api_keys.key_ok(self.scope):
                raise LMXError(api_keys.REFUSAL, kind=UNAUTHORIZED)
            method = self.scope["method"]
            if method not in self.methods:
                raise InvalidRequest(
                    f"{method} is not allowed on {self.scope['path']}; use {', '.join(self.methods)}.",
                    kind=METHOD_NOT_ALLOWED,
                )
            await getattr(self, method.lower())(body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = to_lmx_error(exc)
            if err.kind is INTERNAL:
                log.exception("Unexpected failure on %s", self.endpoint)
            await self.send_error(err)
        finally:
            if self.channel_layer is not None:
                await self.channel_layer.send(self.channel_name, {"type": "lmx.served"})

    async def lmx_served(self, message):
        raise StopConsumer()

    async def disconnect(self):
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- helpers -------------------------------------------------------------------------
    def note_model(self, data: dict) -> None:
        """Name the model the body asks for in this request's error records, before it is checked."""
        if isinstance(data.get("model"), str):
            self.model_name = data["model"][:300]

    def parse_json(self, body: bytes) -> dict:
        if origins.from_browser(self.scope) and not origins.sends_json(self.scope):
            # text/plain and forms are what a page elsewhere may send without asking first
            raise LMXError("A browser's request must send Content-Type: application/json.", kind=NOT_JSON)
        if not body.strip():
            raise InvalidRequest("The request body is empty; send a JSON object.")
        data = json_body.loads(body)
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        return data

    async def send_json(self, data, status: int = 200, headers: list | None = None) -> None:
        await self.send_response(status, json.dumps(data).encode(), headers=JSON_HEADERS + (headers or []))

    async def send_error(self, err: LMXError, *, record: bool = True) -> None:
        if record:
            await record_error(err, endpoint=self.endpoint, model=self.model_name)
        headers = []
        if err.retry_after:
            headers.append((b"retry-after", str(err.retry_after).encode()))
        if err.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="lmx"'))
        await self.send_json(self.error_payload(err), status=err.status, headers=headers)

    def error_payload(self, err: LMXError) -> dict:
        """The error body in this API's own shape (LMX's by default; Anthropic's differs)."""
        return error_body(err)


class StreamingConsumer(JsonConsumer):
    """An endpoint that may answer with a stream: once its headers are out, an error travels in
    the stream (where the handler records it), never as a second response."""

    _headers_sent = False

    async def send_headers(self, *, status=200, headers=None):
        self._headers_sent = True
        await super().send_headers(status=status, headers=headers)

    async def send_error(self, err: LMXError, *, record: bool = True) -> None:
        if not self._headers_sent:
            await super().send_error(err, record=record)


class UnknownPathConsumer(JsonConsumer):
    """A path no endpoint serves under an API prefix: the JSON error body, not Django's HTML page."""

    methods = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    async def _unknown(self, body: bytes) -> None:
        raise LMXError(
            f"There is no endpoint at {self.scope['method']} {self.scope['path']}. The API's paths are "
            "/v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/rerank, "
            "/v1/messages, /v1/messages/count_tokens and /v1/responses (GET /openapi.json lists them).",
            kind=PATH_NOT_FOUND,
        )

    get = head = post = put = patch = delete = options = _unknown
