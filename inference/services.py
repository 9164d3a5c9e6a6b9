"""Model lifecycle operations, called by the endpoints, the serve command and the expiry loop.

Async because they wait on the engine; what other apps keep of them (the inventory) they learn
from inference.signals.
"""

from __future__ import annotations

import asyncio
import logging

from inference import aliases, memory, pool, resolve, signals, store_index
from inference.errors import InvalidRequest, LMXError, ModelNotFound
from inference.runtime import get_engine
from inference.store import ModelSpec
from inference.wire import DEFAULT_OPTIONS, LoadedInfo, LoadOptions

log = logging.getLogger("lmx.services")
_download_locks: dict[str, asyncio.Lock] = {}
expiry_task: asyncio.Task | None = None  # run_expiry, once the server runs


async def models_scan() -> list[ModelSpec]:
    """Scan the disk; subscribers bring the inventory in line with it."""
    specs = await asyncio.to_thread(store_index.index.models)
    loaded_ids = [m.spec.id for m in get_engine().models]
    await signals.models_scanned.asend(
        sender=ModelSpec, specs=[s.as_dict() for s in specs], loaded_ids=loaded_ids
    )
    return specs


def model_state(spec: ModelSpec) -> dict:
    """A model on disk as GET /admin/models shows it; a resident one with its lifetime and work."""
    engine = get_engine()
    loaded = engine.resident(spec.path)
    state = {
        **spec.as_dict(),
        "loaded": loaded is not None,
        "state": "loading" if engine.loading == spec.id else "idle",
        "vram_gb": None,
        "backend": None,
        "context_length": None,
        "estimate_gb": round(spec.estimate_bytes() / 1e9, 3),
        "crashed_engine": pool.crashed_before(spec),  # requests do not load it on their own
        "error": spec.extra.get("error"),  # why its files cannot be loaded, if they cannot
        "mlx_bits": spec.extra.get("mlx_bits"),  # GGUF: the MLX widths its tensors become
    }
    if loaded is None:
        return state
    active = engine.active_for(spec.path)
    lifetime = pool.lifetime_of(spec.path)
    ttl = pool.ttl_s(spec.path)
    idle = pool.idle_s(spec.path)
    return {
        **state,
        "state": "inferring" if active else "loaded",
        "vram_gb": loaded.vram_gb,
        "backend": loaded.backend,
        "sharding": loaded.sharding,  # split over a distributed group: tensor or pipeline
        "context_length": loaded.context_length,
        "model_context_length": loaded.model_context_length,
        "prompt_cache_bytes": loaded.options.prompt_cache_bytes,
        "kv_bits": loaded.options.kv_bits,
        "kv_cache_bytes": dict(engine.memory.kv_cache).get(spec.path, 0),
        "pinned": lifetime.pinned,
        "ttl_s": None if ttl == pool.FOREVER else ttl,
        "ttl_left_s": pool.ttl_left_s(spec.path),
        "idle_s": None if idle is None else round(idle, 1),
        "active_requests": active,
        "most_recent": engine.loaded is not None and engine.loaded.spec.path == spec.path,
    }


async def _resolve(ref: str) -> ModelSpec:
    specs = await asyncio.to_thread(store_index.index.models)
    local = await asyncio.to_thread(resolve.resolve_local, ref, specs)
    if local is not None:
        return local
    return await _fetch(ref, specs)


async def _fetch(ref: str, specs: list[ModelSpec]) -> ModelSpec:
    """A ref not on disk: downloaded when it is a hub id, else ModelNotFound."""
    lock = _download_locks.setdefault(ref, asyncio.Lock())
    async with lock:  # one download per repo, however many callers ask
        return await asyncio.to_thread(resolve.resolve, ref, specs, allow_download=True)


async def model_pull(*, ref: str) -> dict:
    """Download a hub model into the cache without loading it (progress as `downloading`
    model events); one already on disk is not fetched again."""
    if not resolve.HUB_ID.match(ref):
        raise InvalidRequest(
            f"'{ref}' is not a Hugging Face model id (owner/name, e.g. mlx-community/Qwen3-4B-4bit)."
        )
    specs = await asyncio.to_thread(store_index.index.models)
    local = await asyncio.to_thread(resolve.resolve_local, ref, specs)
    spec = local or await _fetch(ref, specs)
    if local is None:
        await models_scan()  # the inventory lists it before the answer
    return {
        "success": True,
        "model": spec.id,
        "path": spec.path,
        "format": spec.format,
        "size_bytes": spec.size_bytes,
        "downloaded": local is None,
    }


_pool_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def _pool_lock() -> asyncio.Lock:
    """Loads, evictions and expiries one at a time (per event loop: a reload after an engine
    crash runs in a loop of its own)."""
    return _pool_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())


async def model_load(
    *,
    ref: str,
    alias: str | None = None,
    pin: bool | None = None,
    ttl_s: float | None = None,
    options: LoadOptions = DEFAULT_OPTIONS,
) -> dict:
    """Make `ref` (a model id, alias, local path or hub id) resident beside the others, first
    unloading the least recently used idle, unpinned models it needs room from; `alias` names it
    from then on."""
    refused = memory.refusal()
    if refused is not None:
        raise refused
    spec = await _resolve(aliases.resolve(ref))
    if spec.extra.get("error"):
        advice = (
            "Use an MLX-native copy of the model."
            if spec.extra.get("unsupported")
            else "The files are corrupt or incomplete; re-download or re-convert the model."
        )
        raise InvalidRequest(f"{spec.id} cannot be loaded: {spec.extra['error']}. {advice}")
    engine = get_engine()
    evicted: list[dict] = []
    async with _pool_lock():
        resident = engine.resident(spec.path)
        if resident is not None and _differs(resident, options):
            if engine.active_for(spec.path):
                raise InvalidRequest(
                    f"{spec.id} is resident with other load options and is serving requests; "
                    "unload it first (POST /admin/models/unload) to load it with these."
                )
            evicted.append(await _unload(resident, reason="request"))
            resident = None
        if resident is None:
            for victim in pool.room_for(spec):
                evicted.append(await _unload(victim, reason="evicted"))
        try:
            result = await asyncio.wrap_future(engine.load(spec, options))
        except LMXError as exc:
            if exc.code == "internal-error":  # the engine process died during this load
                pool.crashed(spec)
                raise LMXError(
                    f"Loading {spec.id} crashed the engine process. LMX restarted it and loads the "
                    "models that were resident again; it does not try this one again on its own "
                    "(requests naming it are refused until it is loaded here and succeeds).",
                    kind=exc.kind,
                ) from exc
            raise
        pool.crash_forgotten(spec)
        pool.lifetime_set(path=spec.path, pin=pin, ttl_s=ttl_s)
    if not result.already_loaded:
        await signals.model_loaded.asend(
            sender=ModelSpec, spec=spec.as_dict(), load_time_ms=result.load_time_ms
        )
    if alias:
        aliases.add(alias, result.model)
    loaded = engine.resident(spec.path)
    return {
        "success": True,
        "model": result.model,
        "load_time_ms": result.load_time_ms,
        "vram_gb": result.vram_gb,
        "format": spec.format,
        "backend": loaded.backend if loaded else None,
        "context_length": loaded.context_length if loaded else None,
        "already_loaded": result.already_loaded,
        "pinned": pool.lifetime_of(spec.path).pinned,
        "evicted": evicted,
    }


def _differs(loaded: LoadedInfo, options: LoadOptions) -> bool:
    """Whether a load asks for options the resident model was not loaded with (unset ones ask
    for nothing)."""
    return any(
        value is not None and value != getattr(loaded.options, name) for name, value in vars(options).items()
    )


async def _unload(loaded: LoadedInfo, *, reason: str) -> dict:
    result = await asyncio.wrap_future(get_engine().unload(loaded.spec.path, reason))
    pool.lifetime_forget(path=loaded.spec.path)
    if result.model is not None:
        await signals.model_unloaded.asend(sender=ModelSpec, model_id=result.model)
    return {"model": loaded.spec.id, "freed_vram_gb": result.freed_vram_gb, "reason": reason}


async def model_evict(loaded: LoadedInfo) -> dict | None:
    """Unload `loaded` for memory if it is still resident and idle (the guardian's step)."""
    engine = get_engine()
    async with _pool_lock():
        if engine.resident(loaded.spec.path) is None or engine.active_for(loaded.spec.path):
            return None
        return await _unload(loaded, reason="evicted")


async def model_unload(*, model: str | None = None, reason: str = "request") -> dict:
    """Unload the model `model` names (an id, alias or path), or every resident model."""
    engine = get_engine()
    if model is None:
        async with _pool_lock():
            result = await asyncio.wrap_future(engine.unload(None, reason))
            pool.lifetime_forget(path=None)
        await signals.model_unloaded.asend(sender=ModelSpec, model_id=None)
        return {
            "success": True,
            "model": result.model,
            "models": list(result.models),
            "freed_vram_gb": result.freed_vram_gb,
        }
    loaded = pool.resident_named(model)
    if loaded is None:
        resident = ", ".join(m.spec.id for m in engine.models) or "none"
        raise ModelNotFound(f"Model '{model}' is not resident (resident: {resident}). See GET /admin/models.")
    async with _pool_lock():
        done = await _unload(loaded, reason=reason)
    return {
        "success": True,
        "model": done["model"],
        "models": [done["model"]],
        "freed_vram_gb": done["freed_vram_gb"],
    }


async def models_expire() -> list[str]:
    """Unload the resident models idle past their TTL (or their last request's keep_alive)."""
    gone = []
    for loaded in pool.expired():
        async with _pool_lock():
            if pool.ttl_left_s(loaded.spec.path) != 0.0:  # a request came meanwhile
                continue
            gone.append((await _unload(loaded, reason="expired"))["model"])
    return gone


async def run_expiry(period_s: float = 0.5) -> None:
    """The server's expiry loop (started when its event loop runs)."""
    while True:
        await asyncio.sleep(period_s)
        try:
            await models_expire()
        except Exception:
            log.exception("Model expiry failed")
