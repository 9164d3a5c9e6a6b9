"""GET /openapi.json: the API described by the models that validate it."""

from __future__ import annotations

import asyncio

from inference.api.protocol import openapi
from lmx_site.consumers import JsonConsumer


class OpenAPIConsumer(JsonConsumer):
    async def get(self, body: bytes) -> None:
        await self.send_json(await asyncio.to_thread(openapi.document))
