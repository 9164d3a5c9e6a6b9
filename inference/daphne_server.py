"""Daphne's server as lmx_serve runs it.

Two things Daphne (Twisted) does not do for LMX are added here: a stop that first ends LMX's
requests in flight with an error their clients read, and answers at the HTTP level that arrive
before any consumer runs — a declared body over LMX_MAX_BODY_BYTES gets 413 at once (Twisted
would wait for the whole body), oversized headers 431, and malformed framing a JSON 400 (Twisted
sends an empty one). A WebSocket message over that limit gets an error message before the
socket closes with 1009 (autobahn would only close).
"""

from __future__ import annotations

import asyncio
import json
import logging

import daphne.server
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import defer

from inference import conf, shutdown
from inference.errors import INVALID_REQUEST, PAYLOAD_TOO_LARGE, ErrorCode, LMXError

log = logging.getLogger("lmx")
HEADERS_TOO_LARGE = ErrorCode("invalid-request", 431, "warning")
_REASONS = {400: b"Bad Request", 413: b"Payload Too Large", 431: b"Request Header Fields Too Large"}


class LMXDaphne(Server):
    """Daphne, whose stop first ends LMX's requests in flight with an error their clients read
    (inference.shutdown), then cancels what is left as Daphne does."""

    def kill_all_applications(self):
        drained = defer.Deferred.fromFuture(asyncio.ensure_future(shutdown.drain()))
        drained.addErrback(lambda failure: log.error("Ending requests in flight failed: %s", failure.value))
        drained.addCallback(lambda _: super(LMXDaphne, self).kill_all_applications())
        return drained


def _record(err: LMXError, endpoint: str) -> None:
    try:
        from lmx_site.consumers import record_error

        asyncio.get_running_loop().create_task(record_error(err, endpoint=endpoint))
    except RuntimeError:  # no loop running (not under lmx_serve): the answer is what matters
        pass


def _answer(transport, err: LMXError, endpoint: str) -> None:
    """Write a JSON error response straight to the connection and close it; record the error."""
    body = json.dumps({"error": {"code": err.code, "message": err.message}}).encode()
    head = (
        f"HTTP/1.1 {err.status} ".encode()
        + _REASONS[err.status]
        + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    transport.write(head + body)
    transport.loseConnection()
    _record(err, endpoint)


class _Discard:
    """Where the body of a refused request goes while the connection closes."""

    def write(self, data) -> None:
        pass

    def seek(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


class LMXWebRequest(WebRequest):
    def gotLength(self, length):
        limit = conf.get("LMX_MAX_BODY_BYTES")
        if length is not None and length > limit:
            self.content = _Discard()
            err = LMXError(
                f"The request body declares {length} bytes; LMX reads at most {limit} (LMX_MAX_BODY_BYTES).",
                kind=PAYLOAD_TOO_LARGE,
            )
            channel = self.channel  # the request line is the channel's until the body is read
            method = getattr(channel, "_command", b"?").decode("latin-1")
            path = getattr(channel, "_path", b"?").decode("latin-1").split("?")[0][:200]
            _answer(channel.transport, err, f"{method} {path}")
            return
        super().gotLength(length)


class LMXHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = LMXWebRequest
        channel = getattr(protocol, "_channel", protocol)  # Twisted wraps the HTTP/1.1 channel

        def bad_request() -> None:  # Twisted's own is an empty 400
            too_big = channel._receivedHeaderSize > channel.totalHeadersSize
            err = (
                LMXError(
                    f"The request's headers exceed {channel.totalHeadersSize} bytes.", kind=HEADERS_TOO_LARGE
                )
                if too_big
                else LMXError("The request is not well-formed HTTP.", kind=INVALID_REQUEST)
            )
            _answer(channel.transport, err, "HTTP")

        def line_too_long(line) -> None:  # Twisted closes the connection without a word
            err = LMXError(
                f"A request line or header exceeds {channel.MAX_LENGTH} bytes.", kind=HEADERS_TOO_LARGE
            )
            _answer(channel.transport, err, "HTTP")

        channel._respondToBadRequestAndDisconnect = bad_request
        channel.lineLengthExceeded = line_too_long
        return protocol


daphne.server.HTTPFactory = LMXHTTPFactory  # Server.run builds its factory from this name


class LMXWebSocketProtocol(WebSocketProtocol):
    def _max_message_size_exceeded(self, msg_size, max_msg_size, reason) -> None:
        """A message over the limit gets an error message a client reads (autobahn would only
        close with 1009), then the close."""
        err = LMXError(
            f"The WebSocket message of {msg_size} bytes exceeds the {max_msg_size} bytes LMX reads "
            "(LMX_MAX_BODY_BYTES); it was not read and the socket is closed.",
            kind=PAYLOAD_TOO_LARGE,
        )
        body = {"error": {"code": err.code, "message": err.message}, "done": True}
        self.sendMessage(json.dumps(body).encode(), isBinary=False)
        _record(err, f"WS {getattr(self, 'path', b'?').decode('latin-1')[:200]}")
        # A closing handshake, not autobahn's drop: dropped with the message's rest unread, the
        # connection would be reset and the client could lose the error message above.
        self.failByDrop = False
        super()._max_message_size_exceeded(msg_size, max_msg_size, reason)


class LMXWebSocketFactory(WebSocketFactory):
    protocol = LMXWebSocketProtocol


daphne.server.WebSocketFactory = LMXWebSocketFactory
