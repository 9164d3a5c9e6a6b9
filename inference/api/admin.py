"""Admin API: load, unload and pull (the inventory, GET /admin/models, is monitoring's). Guarded by
LMX_ADMIN_TOKEN when set."""

from inference import services
from inference.api.protocol.admin import LoadRequest, PullRequest, UnloadRequest
from inference.api.protocol.base import parse
from lmx_site.consumers import JsonConsumer


class LoadConsumer(JsonConsumer):
    admin = True
    methods = ("POST",)

    async def post(self, body: bytes) -> None:
        data = self.parse_json(body)
        self.note_model(data)
        req = parse(LoadRequest, data)
        await self.send_json(
            await services.model_load(
                ref=req.model.strip(), alias=req.alias, pin=req.pin, ttl_s=req.ttl_s, options=req.options()
            )
        )


class UnloadConsumer(JsonConsumer):
    admin = True
    methods = ("POST",)

    async def post(self, body: bytes) -> None:
        """With {"model": ...} that model; with no body (or {}) every resident model."""
        req = parse(UnloadRequest, self.parse_json(body)) if body.strip() else UnloadRequest()
        if req.model is not None:
            self.model_name = req.model
        await self.send_json(await services.model_unload(model=req.model and req.model.strip()))


class PullConsumer(JsonConsumer):
    admin = True
    methods = ("POST",)

    async def post(self, body: bytes) -> None:
        data = self.parse_json(body)
        self.note_model(data)
        req = parse(PullRequest, data)
        await self.send_json(await services.model_pull(ref=req.model.strip()))
