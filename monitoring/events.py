"""Live events for /admin/events, fanned out through the Channels layer."""

from __future__ import annotations

import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

GROUP = "lmx-events"
log = logging.getLogger("lmx.events")


def error_payload(event) -> dict:
    from django.urls import reverse

    return {
        "type": "error",
        "code": event.code,
        "severity": event.severity,
        "message": event.message,
        "model": event.model or None,
        "endpoint": event.endpoint,
        "id": event.id,
        "time": event.created_at.isoformat(),
        "admin_url": reverse("admin:monitoring_errorevent_change", args=[event.id]),
    }


def publish(payload: dict) -> None:
    """Send an event to every /admin/events client; never raises (events are best effort)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "lmx.event", "event": dict(payload, ts=round(time.time(), 3))}
    try:
        async_to_sync(layer.group_send)(GROUP, message)
    except Exception:
        log.debug("event dropped", exc_info=True)


async def apublish(payload: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(GROUP, {"type": "lmx.event", "event": dict(payload, ts=round(time.time(), 3))})
    except Exception:
        log.debug("event dropped", exc_info=True)
