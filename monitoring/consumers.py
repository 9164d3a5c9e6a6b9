"""GET /admin/events (SSE), /admin/models (the inventory), /admin/errors, /metrics (Prometheus)
and the memory thresholds endpoint."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from inference import memory
from inference.errors import InvalidRequest
from lmx_site.consumers import SSE_HEADERS, JsonConsumer, sse_frame
from monitoring import events, inventory, selectors, ticker

log = logging.getLogger("lmx.events")

# A client that cannot take events this fast loses the oldest, never stalls the others.
CLIENT_BUFFER = 256


class EventsConsumer(JsonConsumer):
    admin = True

    async def get(self, body: bytes) -> None:
        self._outbox: asyncio.Queue = asyncio.Queue(maxsize=CLIENT_BUFFER)
        await self.channel_layer.group_add(events.GROUP, self.channel_name)
        try:
            await self.send_headers(status=200, headers=SSE_HEADERS)
            # A first memory and heartbeat at once, so a new client shows values immediately.
            await self._write(memory.event())
            await self._write({"type": "heartbeat", "uptime": ticker.uptime()})
            while True:
                await self._write(await self._outbox.get())
        finally:
            await self.channel_layer.group_discard(events.GROUP, self.channel_name)

    async def _write(self, event: dict) -> None:
        await self.send_body(sse_frame(event), more_body=True)

    async def lmx_event(self, message) -> None:
        outbox = getattr(self, "_outbox", None)
        if outbox is None:
            return
        if outbox.full():
            outbox.get_nowait()
        outbox.put_nowait(message["event"])

    async def disconnect(self):
        if self._task is not None and not self._task.done():
            log.warning("SSE client disconnected: ConnectionResetError")
        await super().disconnect()


class MemoryThresholdsConsumer(JsonConsumer):
    admin = True
    methods = ("GET", "POST")

    async def get(self, body: bytes) -> None:
        warning, critical = memory.thresholds()
        await self.send_json({"warning_pct": warning, "critical_pct": critical, **memory.event()})

    async def post(self, body: bytes) -> None:
        data = self.parse_json(body)
        current_warning, current_critical = memory.thresholds()
        warning = data.get("warning_pct", current_warning)
        critical = data.get("critical_pct", current_critical)
        for name, value in (("warning_pct", warning), ("critical_pct", critical)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
                raise InvalidRequest(f"Field '{name}' must be a number in (0, 100].")
        if warning > critical:
            raise InvalidRequest("warning_pct must not be above critical_pct.")
        memory.set_thresholds(warning=float(warning), critical=float(critical))
        ticker.check_memory_now()
        await self.get(b"")


class ModelsConsumer(JsonConsumer):
    """GET /admin/models: every model on disk with its state and load history."""

    admin = True

    async def get(self, body: bytes) -> None:
        await self.send_json(await inventory.models_list())


class ErrorsConsumer(JsonConsumer):
    """GET /admin/errors?limit=20&code=...: the latest error events, newest first."""

    admin = True

    async def get(self, body: bytes) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        raw_limit = query.get("limit", ["20"])[-1]
        if not (raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= 500):
            raise InvalidRequest("Query parameter 'limit' must be an integer from 1 to 500.")
        code = query.get("code", [""])[-1] or None
        rows = await database_sync_to_async(selectors.error_events_recent)(limit=int(raw_limit), code=code)
        await self.send_json({"errors": [events.error_payload(row) for row in rows]})


class MetricsConsumer(JsonConsumer):
    async def get(self, body: bytes) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        from monitoring import metrics

        await self.send_response(
            200, metrics.render(), headers=[(b"content-type", CONTENT_TYPE_LATEST.encode())]
        )
