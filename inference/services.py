"""Model lifecycle operations, called by the endpoints and the serve command.

Async because they wait on the engine; what other apps keep of them (the inventory) they learn
from inference.signals.
"""

from __future__ import annotations

import asyncio
import logging

from inference import aliases, memory, resolve, signals, store
from inference.errors import InvalidRequest
from inference.runtime import get_engine
from inference.store import ModelSpec

log = logging.getLogger("lmx.services")
_download_locks: dict[str, asyncio.Lock] = {}


async def models_scan() -> list[ModelSpec]:
    """Scan the disk; subscribers bring the inventory in line with it."""
    specs = await asyncio.to_thread(store.scan)
    engine = get_engine()
    loaded = engine.loaded.spec.id if engine.loaded else None
    await signals.models_scanned.asend(sender=ModelSpec, specs=[s.as_dict() for s in specs], loaded_id=loaded)
    return specs


def model_state(spec: ModelSpec) -> dict:
    engine = get_engine()
    loaded = engine.loaded
    is_loaded = loaded is not None and loaded.spec.path == spec.path
    state = (
        "loading"
        if engine.loading == spec.id
        else ("idle" if not is_loaded else ("inferring" if engine.active_requests else "loaded"))
    )
    return {
        **spec.as_dict(),
        "loaded": is_loaded,
        "state": state,
        "vram_gb": loaded.vram_gb if is_loaded else None,
        "backend": loaded.backend if is_loaded else None,
        "context_length": loaded.context_length if is_loaded else None,
        "estimate_gb": round(spec.estimate_bytes() / 1e9, 3),
    }


async def _resolve(ref: str) -> ModelSpec:
    specs = await asyncio.to_thread(store.scan)
    local = await asyncio.to_thread(resolve.resolve_local, ref, specs)
    if local is not None:
        return local
    lock = _download_locks.setdefault(ref, asyncio.Lock())
    async with lock:  # one download per repo, however many callers ask
        return await asyncio.to_thread(resolve.resolve, ref, specs, allow_download=True)


async def model_load(*, ref: str, alias: str | None = None) -> dict:
    """Load `ref` (a model id, alias, local path or hub id); `alias` names it from then on."""
    spec = await _resolve(aliases.resolve(ref))
    if spec.extra.get("error"):
        # refused before the resident model is unloaded: a broken file must not cost the working one
        raise InvalidRequest(
            f"{spec.id} cannot be loaded: {spec.extra['error']}. The files are corrupt or incomplete; "
            "re-download or re-convert the model."
        )
    memory.check_fits(spec)
    engine = get_engine()
    result = await asyncio.wrap_future(engine.load(spec))
    if not result.already_loaded:
        await signals.model_loaded.asend(
            sender=ModelSpec, spec=spec.as_dict(), load_time_ms=result.load_time_ms
        )
    if alias:
        aliases.add(alias, result.model)
    return {
        "success": True,
        "model": result.model,
        "load_time_ms": result.load_time_ms,
        "vram_gb": result.vram_gb,
        "format": spec.format,
        "backend": engine.loaded.backend if engine.loaded else None,
        "already_loaded": result.already_loaded,
        "unloaded": result.unloaded,
    }


async def model_unload() -> dict:
    result = await asyncio.wrap_future(get_engine().unload())
    await signals.model_unloaded.asend(sender=ModelSpec, model_id=result.model)
    return {"success": True, "model": result.model, "freed_vram_gb": result.freed_vram_gb}
