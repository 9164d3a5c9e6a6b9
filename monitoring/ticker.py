"""The metrics ticker and memory guardian: one asyncio task in the server's event loop.

Every tick it samples throughput; on its intervals it publishes memory and heartbeat events
and checks memory against the thresholds. At the critical threshold it unloads the model so
the process never dies of OOM; in-flight requests end with `oom-unloaded`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from inference import conf, services
from inference.runtime import add_listener, get_engine
from monitoring import events

log = logging.getLogger("lmx.guardian")

_started_at = time.time()
_task: asyncio.Task | None = None
_thresholds: dict[str, float] = {}


def thresholds() -> tuple[float, float]:
    """(warning %, critical %): settings, unless an operator changed them at run time."""
    return (
        _thresholds.get("warning", conf.get("LMX_MEMORY_WARNING_PCT")),
        _thresholds.get("critical", conf.get("LMX_MEMORY_CRITICAL_PCT")),
    )


def set_thresholds(*, warning: float, critical: float) -> None:
    _thresholds.update(warning=warning, critical=critical)


def uptime() -> float:
    return round(time.time() - _started_at, 1)


def memory_event(kind: str = "memory") -> dict:
    mem = services.memory_snapshot()
    used, total = mem["active_gb"], mem["total_gb"]
    warning, critical = thresholds()
    return {
        "type": kind,
        "vram_used_gb": used,
        "vram_total_gb": total,
        "pct": round(used / total * 100, 2) if total else 0.0,
        # so a gauge colours itself by the thresholds in force, even after a run-time change
        "warning_pct": warning,
        "critical_pct": critical,
    }


class Guardian:
    def __init__(self):
        self.warned = False
        self.last_tokens = get_engine().counters.generated_tokens
        self.last_time = time.monotonic()

    def throughput(self) -> dict | None:
        engine = get_engine()
        now = time.monotonic()
        tokens = engine.counters.generated_tokens
        rate = (tokens - self.last_tokens) / max(now - self.last_time, 1e-6)
        self.last_tokens, self.last_time = tokens, now
        if engine.active_requests == 0 and rate == 0:
            return None
        loaded = engine.loaded
        return {
            "type": "throughput",
            "tokens_per_second": round(rate, 2),
            "active_requests": engine.active_requests,
            "queued_requests": engine.queued_requests,
            "model": loaded.spec.id if loaded else None,
        }

    async def check(self, sample: dict) -> None:
        warning, critical = thresholds()
        pct = sample["pct"]
        engine = get_engine()
        if pct >= critical and engine.loaded is not None:
            model = engine.loaded.spec.id
            log.error("Memory critical at %.1f%% — unloading model", pct)
            await events.apublish(
                {
                    **sample,
                    "type": "memory_critical",
                    "action": "model_unloaded",
                    "model": model,
                    "message": f"Memory at {pct:.1f}% ≥ {critical:.0f}%: {model} was unloaded.",
                }
            )
            await asyncio.wrap_future(engine.unload(reason="oom"))
            from inference.errors import OomUnloaded
            from inference.http import record_error

            await record_error(
                OomUnloaded(
                    f"Memory reached {pct:.1f}% (critical {critical:.0f}%); "
                    f"{model} was unloaded. Free memory and reload a model."
                ),
                endpoint="memory-guardian",
                model=model,
            )
            self.warned = False
        elif pct >= warning:
            if not self.warned:
                self.warned = True
                log.warning(
                    "Memory usage at %.1f%% (%.1f/%.1f GB)",
                    pct,
                    sample["vram_used_gb"],
                    sample["vram_total_gb"],
                )
                await events.apublish(
                    {
                        **sample,
                        "type": "memory_warning",
                        "message": f"Memory at {pct:.1f}% ≥ warning threshold {warning:.0f}%.",
                    }
                )
        else:
            self.warned = False


async def run() -> None:
    guardian = Guardian()
    tick = 0.0
    while True:
        period = conf.get("LMX_EVENTS_THROUGHPUT_S")
        await asyncio.sleep(period)
        tick += period
        try:
            sample = guardian.throughput()
            if sample:
                await events.apublish(sample)
            if _due(tick, period, conf.get("LMX_EVENTS_MEMORY_S")):
                mem = memory_event()
                await events.apublish(mem)
                await guardian.check(mem)
            if _due(tick, period, conf.get("LMX_EVENTS_HEARTBEAT_S")):
                await events.apublish({"type": "heartbeat", "uptime": uptime()})
        except Exception:
            log.exception("Metrics tick failed")


def _due(tick: float, period: float, interval: float) -> bool:
    return int(tick / interval) != int((tick - period) / interval)


def start(loop: asyncio.AbstractEventLoop) -> None:
    """Start the ticker in the server's loop and route engine events into the event stream."""
    global _task

    def forward(event: dict) -> None:  # called on the engine thread
        loop.call_soon_threadsafe(lambda: loop.create_task(events.apublish(event)))

    add_listener(forward)
    _task = loop.create_task(run())
