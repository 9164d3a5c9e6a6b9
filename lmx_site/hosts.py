"""Host-header allowlist for every protocol, so a web page cannot reach LMX by DNS rebinding.

Django checks ALLOWED_HOSTS only for its own views; Channels consumers need this in front.
"""

import json

from django.conf import settings
from django.http.request import split_domain_port, validate_host


class AllowedHostsMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        hosts = [value.decode("latin-1") for key, value in scope.get("headers", []) if key == b"host"]
        if len(hosts) > 1:  # which one a proxy or a browser meant is anyone's guess
            return await self._refuse(scope, receive, send, f"{len(hosts)} Host headers were sent; send one.")
        host = hosts[0] if hosts else ""
        domain, _port = split_domain_port(host)
        if domain and validate_host(domain, settings.ALLOWED_HOSTS):
            return await self.app(scope, receive, send)
        await self._refuse(
            scope,
            receive,
            send,
            f"Host header '{host[:100]}' is not allowed. Add it to LMX_ALLOWED_HOSTS to serve it.",
        )

    async def _refuse(self, scope, receive, send, reason):
        from inference.errors import INVALID_REQUEST, LMXError

        await refuse(scope, receive, send, LMXError(reason, kind=INVALID_REQUEST))


async def refuse(scope, receive, send, err) -> None:
    """Answer `err` before any consumer runs (a closed handshake for a WebSocket) and record it."""
    from lmx_site.consumers import record_error

    await record_error(err, endpoint=f"{scope.get('method', 'WS')} {scope['path']}")
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4003})
        return
    body = json.dumps({"error": {"code": err.code, "message": err.message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
