"""Model lifecycle operations, called by the endpoints (and the serve command).

Async because they wait on the engine thread; ORM writes go through database_sync_to_async.
"""

from __future__ import annotations

import asyncio
import logging

import psutil
from channels.db import database_sync_to_async

from inference import resolve, store
from inference.errors import INSUFFICIENT_MEMORY, InvalidRequest, LMXError
from inference.runtime import get_engine
from inference.store import ModelSpec

log = logging.getLogger("lmx.services")
_download_locks: dict[str, asyncio.Lock] = {}


def memory_snapshot() -> dict:
    """MLX allocator figures (as the engine last read them) against the device total (RAM on CPU)."""
    mem = get_engine().memory
    system = psutil.virtual_memory()
    total = mem.total or system.total
    return {
        "active_gb": round(mem.active / 1e9, 3),
        "peak_gb": round(mem.peak / 1e9, 3),
        "cache_gb": round(mem.cache / 1e9, 3),
        "total_gb": round(total / 1e9, 3),
        "system_used_gb": round((system.total - system.available) / 1e9, 3),
    }


async def models_scan() -> list[ModelSpec]:
    """Scan the disk and bring the inventory in line with it."""
    from monitoring.services import inventory_sync

    specs = await asyncio.to_thread(store.scan)
    engine = get_engine()
    loaded = engine.loaded.spec.id if engine.loaded else None
    await database_sync_to_async(inventory_sync)(specs=[s.as_dict() for s in specs], loaded_id=loaded)
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


async def models_list() -> dict:
    from monitoring.selectors import inventory_by_id

    specs = await models_scan()
    records = await database_sync_to_async(inventory_by_id)()
    engine = get_engine()
    out = []
    for spec in specs:
        item = model_state(spec)
        record = records.get(spec.id)
        item["load_count"] = record.load_count if record else 0
        item["last_loaded_at"] = (
            record.last_loaded_at.isoformat() if record and record.last_loaded_at else None
        )
        item["last_load_time_ms"] = record.last_load_time_ms if record else None
        out.append(item)
    loaded = engine.loaded
    if loaded is not None and not any(m["loaded"] for m in out):
        out.append(model_state(loaded.spec))  # loaded by path from outside the scanned roots
    return {"models": out, "loaded": loaded.spec.id if loaded else None, "memory": memory_snapshot()}


async def _resolve(ref: str) -> ModelSpec:
    specs = await asyncio.to_thread(store.scan)
    local = await asyncio.to_thread(resolve.resolve_local, ref, specs)
    if local is not None:
        return local
    lock = _download_locks.setdefault(ref, asyncio.Lock())
    async with lock:  # one download per repo, however many callers ask
        return await asyncio.to_thread(resolve.resolve, ref, specs, allow_download=True)


def check_fits(spec: ModelSpec) -> None:
    """Refuse a load whose estimate would cross the critical memory threshold."""
    engine = get_engine()
    mem = memory_snapshot()
    total = mem["total_gb"] * 1e9
    resident = engine.loaded.vram_bytes if engine.loaded else 0
    # the resident model is unloaded first, so its memory does not count against the new one
    used = max(0.0, mem["active_gb"] * 1e9 - resident)
    from monitoring.ticker import thresholds

    _warning, critical = thresholds()
    projected = (used + spec.estimate_bytes()) / total * 100
    if projected >= critical:
        raise LMXError(
            f"Loading {spec.id} needs about {spec.estimate_bytes() / 1e9:.1f} GB "
            f"(parameters x bits / 8 x 1.2), which would put memory at {projected:.0f}% "
            f"(critical threshold {critical:.0f}%). Choose a smaller model or free memory.",
            kind=INSUFFICIENT_MEMORY,
        )


async def model_load(*, ref: str) -> dict:
    from monitoring.services import inventory_record_load

    spec = await _resolve(ref)
    if spec.extra.get("error"):
        # refused before the resident model is unloaded: a broken file must not cost the working one
        raise InvalidRequest(
            f"{spec.id} cannot be loaded: {spec.extra['error']}. The files are corrupt or incomplete; "
            "re-download or re-convert the model."
        )
    check_fits(spec)
    engine = get_engine()
    result = await asyncio.wrap_future(engine.load(spec))
    if not result.already_loaded:
        await database_sync_to_async(inventory_record_load)(
            spec=spec.as_dict(), load_time_ms=result.load_time_ms
        )
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
    from monitoring.services import inventory_record_unload

    result = await asyncio.wrap_future(get_engine().unload())
    await database_sync_to_async(inventory_record_unload)(model_id=result.model)
    return {"success": True, "model": result.model, "freed_vram_gb": result.freed_vram_gb}
