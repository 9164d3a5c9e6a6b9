"""What the inference app announces; other apps (monitoring) subscribe in their AppConfig.ready().

Inference never imports monitoring: it sends these, and whoever listens records, counts and
streams them. Async signals are awaited with `asend` by request handlers, so a recorded error is
in the history before its response is sent, as the SPEC promises.
"""

from __future__ import annotations

from django.dispatch import Signal

# error: LMXError, endpoint: str, model: str (async; every coded error a client or the guardian saw)
error_occurred = Signal()
# specs: list[dict] (ModelSpec.as_dict()), loaded_ids: list[str] (async; after a scan of the store)
models_scanned = Signal()
# spec: dict, load_time_ms: int (async; a load through the API or a reload after an engine crash)
model_loaded = Signal()
# model_id: str | None (async; an unload through the API, an eviction or an expiry; None: all)
model_unloaded = Signal()
# event: dict (a model_event, any thread: the engine's reader thread included)
model_event = Signal()
# endpoint: str, finish_reason: str, stats: wire.Stats, model: str (sync; a generation that ended normally)
request_completed = Signal()
# loop: asyncio loop (sync; the server's event loop runs: start what lives in it)
server_started = Signal()
