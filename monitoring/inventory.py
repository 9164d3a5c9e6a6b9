"""The model inventory as the admin API shows it: the store's scan, the engine's state and the
load history kept here."""

from __future__ import annotations

from channels.db import database_sync_to_async

from inference import memory, services
from inference.runtime import get_engine
from monitoring.selectors import inventory_by_id


async def models_list() -> dict:
    specs = await services.models_scan()
    records = await database_sync_to_async(inventory_by_id)()
    engine = get_engine()
    out = []
    for spec in specs:
        item = services.model_state(spec)
        record = records.get(spec.id)
        item["load_count"] = record.load_count if record else 0
        item["last_loaded_at"] = (
            record.last_loaded_at.isoformat() if record and record.last_loaded_at else None
        )
        item["last_load_time_ms"] = record.last_load_time_ms if record else None
        out.append(item)
    listed = {spec.path for spec in specs}
    for loaded in engine.models:
        if loaded.spec.path not in listed:  # loaded by path from outside the scanned roots
            out.append(services.model_state(loaded.spec))
    loaded = engine.loaded
    mem = memory.snapshot()
    return {
        "models": out,
        "loaded": loaded.spec.id if loaded else None,  # the most recently used
        "resident": [m.spec.id for m in engine.models],
        "memory": {**mem, "pct": memory.used_pct(mem)},
        "group": _group(engine),
    }


def _group(engine) -> dict | None:
    """The distributed group the models are split over (None on one process)."""
    group = engine.group
    if group is None:
        return None
    ranks = engine.memory.ranks or (engine.memory.active,) + (0,) * (group.size - 1)
    return {
        "ranks": group.size,
        "backend": group.backend,
        "hosts": list(group.hosts),
        "sharding": group.sharding,
        "memory_gb_by_rank": [round(b / 1e9, 3) for b in ranks],
        "lost": group.lost,
    }
