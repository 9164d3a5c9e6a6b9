"""Admin API: load and unload (the inventory, GET /admin/models, is monitoring's). Guarded by
LMX_ADMIN_TOKEN when set."""

from inference import services
from inference.errors import InvalidRequest
from lmx_site.consumers import JsonConsumer


class LoadConsumer(JsonConsumer):
    admin = True
    methods = ("POST",)

    async def post(self, body: bytes) -> None:
        data = self.parse_json(body)
        ref = data.get("model")
        if ref is None:
            raise InvalidRequest("Missing field 'model': give a model id, a local path or a hub id.")
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidRequest("Field 'model' must be a non-empty string.")
        if len(ref) > 1024:
            raise InvalidRequest("Field 'model' is too long (over 1024 characters).")
        self.model_name = ref[:300]
        await self.send_json(await services.model_load(ref=ref.strip()))


class UnloadConsumer(JsonConsumer):
    admin = True
    methods = ("POST",)

    async def post(self, body: bytes) -> None:
        await self.send_json(await services.model_unload())
