"""The memory guardian: it steps down before it unloads (SPEC, "Memory guardian").

It acts on each memory sample (monitoring's ticker calls `check`), one step a sample, so each
step's effect is measured before the next:
- at the warning threshold: the prompt caches go (largest first), then idle unpinned models,
  least recently used first, while another model stays resident (the last one only goes at
  critical: it is what the next request needs);
- at critical: every idle model goes (unpinned ones first), then new work is refused (503
  insufficient-memory with Retry-After), and only if memory is still critical at the next sample
  are the models serving requests unloaded; their requests end with oom-unloaded.
Every step is logged, published on /admin/events and, when it costs users something, recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from inference import memory, pool, services, signals
from inference.errors import INSUFFICIENT_MEMORY, LMXError, OomUnloaded
from inference.runtime import get_engine
from inference.wire import LoadedInfo

log = logging.getLogger("lmx.guardian")
Publish = Callable[[dict], Awaitable[None]]


class Guardian:
    def __init__(self):
        self.warned = False  # this crossing of the warning threshold was announced
        self.refusing = False

    async def check(self, sample: dict, publish: Publish) -> None:
        warning, critical = memory.thresholds()
        pct = sample["pct"]
        if pct >= critical:
            await self._critical(sample, critical, publish)
            return
        self._lift()
        if pct >= warning:
            await self._warning(sample, warning, publish)
        else:
            self.warned = False

    def _lift(self) -> None:
        if self.refusing:
            self.refusing = False
            memory.refuse_work(None)
            log.info("Memory below critical again: new work is accepted")

    async def _warning(self, sample: dict, warning: float, publish: Publish) -> None:
        pct = sample["pct"]
        if not self.warned:
            self.warned = True
            log.warning(
                "Memory usage at %.1f%% (%.1f/%.1f GB)", pct, sample["vram_used_gb"], sample["vram_total_gb"]
            )
            freed = await asyncio.wrap_future(get_engine().drop_caches())
            await publish(
                {
                    **sample,
                    "type": "memory_warning",
                    "action": "prompt_caches_dropped",
                    "freed_gb": round(freed / 1e9, 3),
                    "message": f"Memory at {pct:.1f}% ≥ warning threshold {warning:.0f}%: prompt caches "
                    f"dropped ({freed / 1e9:.2f} GB).",
                }
            )
            return
        victim = pool.idle(pinned=False, keep_newest=True)
        if victim:
            await self._evict(
                victim[0], sample, "memory_warning", f"≥ warning threshold {warning:.0f}%", publish
            )

    async def _critical(self, sample: dict, critical: float, publish: Publish) -> None:
        pct = sample["pct"]
        idle = pool.idle(pinned=False) + pool.idle(pinned=True)
        if idle:
            for loaded in idle:
                await self._evict(loaded, sample, "memory_critical", f"≥ {critical:.0f}%", publish)
            await asyncio.wrap_future(get_engine().drop_caches())
            return
        engine = get_engine()
        if not engine.models:
            return
        if not self.refusing:
            self.refusing = True
            message = (
                f"Memory is at {pct:.1f}% (critical {critical:.0f}%): LMX takes no new work until the "
                "requests running finish or free memory. Retry later."
            )
            memory.refuse_work(message)
            log.error("Memory critical at %.1f%% — refusing new work", pct)
            await publish(
                {**sample, "type": "memory_critical", "action": "new_work_refused", "message": message}
            )
            await _record(LMXError(message, kind=INSUFFICIENT_MEMORY), model="")
            return
        models = [m.spec.id for m in engine.models]
        named = ", ".join(models)
        log.error("Memory critical at %.1f%% — unloading model", pct)
        await publish(
            {
                **sample,
                "type": "memory_critical",
                "action": "model_unloaded",
                "model": models[0],
                "models": models,
                "message": f"Memory at {pct:.1f}% ≥ {critical:.0f}%: {named} unloaded.",
            }
        )
        await services.model_unload(reason="oom")
        self._lift()
        error = OomUnloaded(
            f"Memory reached {pct:.1f}% (critical {critical:.0f}%); {named} unloaded. Free memory and "
            "reload a model."
        )
        await _record(error, model=named)
        self.warned = False

    async def _evict(self, loaded: LoadedInfo, sample: dict, kind: str, why: str, publish: Publish) -> None:
        pct = sample["pct"]
        gone = await services.model_evict(loaded)
        if gone is None:  # it took a request meanwhile, or went otherwise
            return
        message = f"Memory at {pct:.1f}% {why}: evicted {loaded.spec.id}, idle (freed {gone['freed_vram_gb']:.2f} GB)."
        log.warning("Memory at %.1f%%: evicted idle model %s", pct, loaded.spec.id)
        await publish(
            {**sample, "type": kind, "action": "model_evicted", "model": loaded.spec.id, "message": message}
        )
        await _record(LMXError(message, kind=INSUFFICIENT_MEMORY), model=loaded.spec.id)


async def _record(error: LMXError, *, model: str) -> None:
    await signals.error_occurred.asend(sender=Guardian, error=error, endpoint="memory-guardian", model=model)
