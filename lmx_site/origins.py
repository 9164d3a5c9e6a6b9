"""No cross-site writes: a web page on another site must not load models, change thresholds or
run inference through the user's browser.

A browser sends `Origin` (and `Sec-Fetch-Site`) with every cross-origin POST, including the
"simple" ones it sends without a preflight (`text/plain`, forms), and with every WebSocket
handshake. Requests with an Origin that is neither this server's own nor in
LMX_ALLOWED_ORIGINS, or marked cross-site, are refused with 403 on every state-changing route
and handshake; a browser's POST to the API must carry JSON (415 otherwise: JsonConsumer).
Clients that are not browsers (curl, SDKs, daemons) send neither header and are unaffected.
"""

from __future__ import annotations

from django.conf import settings

from lmx_site.hosts import refuse

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class CrossSiteMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket") or (kind == "http" and scope["method"] in SAFE_METHODS):
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key, value.decode("latin-1"))
        origin, site = headers.get(b"origin"), headers.get(b"sec-fetch-site", "").lower()
        if origin is not None and not _allowed(origin, headers.get(b"host", "")):
            return await _refuse(scope, receive, send, f"Origin '{origin[:100]}' may not call LMX.")
        if origin is None and site == "cross-site":
            return await _refuse(scope, receive, send, "A cross-site request may not call LMX.")
        return await self.app(scope, receive, send)


def _allowed(origin: str, host: str) -> bool:
    own = {f"http://{host}", f"https://{host}"}
    return origin in own or origin in settings.LMX_ALLOWED_ORIGINS


def from_browser(scope) -> bool:
    """Whether a browser sent the request (it marks every request it sends with these)."""
    return any(key in (b"origin", b"sec-fetch-site") for key, _ in scope.get("headers", []))


def sends_json(scope) -> bool:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            kind = value.decode("latin-1").split(";")[0].strip().lower()
            return kind == "application/json" or kind.endswith("+json")
    return False


async def _refuse(scope, receive, send, reason: str):
    from inference.errors import CROSS_SITE, LMXError

    err = LMXError(reason + " Add the page's origin to LMX_ALLOWED_ORIGINS to let it.", kind=CROSS_SITE)
    await refuse(scope, receive, send, err)
