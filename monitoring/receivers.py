"""What monitoring does with what inference announces (connected in MonitoringConfig.ready())."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from inference import signals
from inference.errors import scrub
from monitoring import events, metrics, services, ticker

log = logging.getLogger("lmx.events")
_loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs


async def record_error(*, error, endpoint: str, model: str, **_) -> None:
    """Count it and keep it in the error history (which also streams it to /admin/events)."""
    metrics.observe_error(error.code)
    try:
        await database_sync_to_async(services.error_event_record)(
            code=error.code,
            severity=error.kind.severity,
            message=scrub(error.message),
            model=model,
            endpoint=endpoint,
            http_status=error.status,
        )
    except Exception:
        log.exception("Could not record error event %s", error.code)


async def sync_inventory(*, specs: list[dict], loaded_ids: list[str], **_) -> None:
    await database_sync_to_async(services.inventory_sync)(specs=specs, loaded_ids=loaded_ids)


async def record_load(*, spec: dict, load_time_ms: int, **_) -> None:
    await database_sync_to_async(services.inventory_record_load)(spec=spec, load_time_ms=load_time_ms)


async def record_unload(*, model_id: str | None, **_) -> None:
    await database_sync_to_async(services.inventory_record_unload)(model_id=model_id)


def stream_model_event(*, event: dict, **_) -> None:
    """From any thread (the engine's reader's too): onto /admin/events in the server's loop."""
    loop = _loop
    if loop is not None:
        loop.call_soon_threadsafe(lambda: loop.create_task(events.apublish(event)))


def count_completion(*, endpoint: str, finish_reason: str, stats, model: str = "", **_) -> None:
    metrics.observe_completion(endpoint, finish_reason, stats, model=model)


def start_ticker(*, loop: asyncio.AbstractEventLoop, **_) -> None:
    global _loop
    _loop = loop
    ticker.start(loop)


def connect() -> None:
    signals.error_occurred.connect(record_error, dispatch_uid="monitoring.record_error")
    signals.models_scanned.connect(sync_inventory, dispatch_uid="monitoring.sync_inventory")
    signals.model_loaded.connect(record_load, dispatch_uid="monitoring.record_load")
    signals.model_unloaded.connect(record_unload, dispatch_uid="monitoring.record_unload")
    signals.model_event.connect(stream_model_event, dispatch_uid="monitoring.stream_model_event")
    signals.request_completed.connect(count_completion, dispatch_uid="monitoring.count_completion")
    signals.server_started.connect(start_ticker, dispatch_uid="monitoring.start_ticker")
