"""Kubernetes-style probes. Both are answered from memory: no disk, no database, no MLX."""

from inference.http import JsonConsumer
from inference.runtime import get_engine


class HealthzConsumer(JsonConsumer):
    async def get(self, body: bytes) -> None:
        await self.send_json({"status": "ok"})


class ReadyzConsumer(JsonConsumer):
    async def get(self, body: bytes) -> None:
        engine = get_engine()
        loaded = engine.loaded
        if loaded is not None:
            await self.send_json({"ready": True, "model": loaded.spec.id, "vram_gb": loaded.vram_gb})
            return
        error = "oom-unloaded" if engine.oom_unloaded else "no-model-loaded"
        body = {"ready": False, "error": error}
        if engine.loading:
            body["loading"] = engine.loading
        await self.send_json(body, status=503, headers=[(b"retry-after", b"5")])
