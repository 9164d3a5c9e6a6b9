"""Kubernetes-style probes, answered from memory: no disk, no database, no MLX.

The daemon calls /readyz before every inference request, so the probes are bare ASGI apps:
no consumer instance, task or channel-layer message per call, only the answer.
"""

from __future__ import annotations

import json

from inference.errors import METHOD_NOT_ALLOWED, InvalidRequest, error_body
from inference.runtime import get_engine
from lmx_site.consumers import JSON_HEADERS, record_error


def healthz() -> tuple[int, dict, list]:
    return 200, {"status": "ok"}, []


def readyz() -> tuple[int, dict, list]:
    engine = get_engine()
    group = engine.group
    if group is not None and group.lost:
        body = {"ready": False, "error": "distributed-rank-lost", "reason": group.lost}
        return 503, body, [(b"retry-after", b"30")]
    loaded = engine.loaded
    if loaded is not None:  # the most recently used of the resident models
        models = [m.spec.id for m in engine.models]
        return 200, {"ready": True, "model": loaded.spec.id, "vram_gb": loaded.vram_gb, "models": models}, []
    body = {"ready": False, "error": "oom-unloaded" if engine.oom_unloaded else "no-model-loaded"}
    if engine.loading:
        body["loading"] = engine.loading
    return 503, body, [(b"retry-after", b"5")]


class Probe:
    def __init__(self, answer):
        self.answer = answer

    async def __call__(self, scope, receive, send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            status, body, headers = self.answer()
        else:
            err = InvalidRequest(
                f"{method} is not allowed on {scope['path']}; use GET.", kind=METHOD_NOT_ALLOWED
            )
            await record_error(err, endpoint=f"{method} {scope['path']}")
            status, body, headers = err.status, error_body(err), []
        payload = json.dumps(body).encode()
        headers = [*JSON_HEADERS, *headers, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})


healthz_app = Probe(healthz)
readyz_app = Probe(readyz)
