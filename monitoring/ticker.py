"""The metrics ticker: one asyncio task in the server's event loop.

Every tick it samples throughput; on its intervals it publishes memory and heartbeat events and
lets the memory guardian (inference.guardian) act on the memory figures.
"""

from __future__ import annotations

import asyncio
import logging
import time

from inference import conf, guardian, memory
from inference.runtime import get_engine
from monitoring import events

log = logging.getLogger("lmx.guardian")

_started_at = time.time()
_task: asyncio.Task | None = None


def uptime() -> float:
    return round(time.time() - _started_at, 1)


class Throughput:
    def __init__(self):
        self.last_tokens = get_engine().counters.generated_tokens
        self.last_time = time.monotonic()

    def sample(self) -> dict | None:
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
            "active_by_model": {m.spec.id: engine.active_for(m.spec.path) for m in engine.models},
        }


_wake: asyncio.Event | None = None


def check_memory_now() -> None:
    """The thresholds changed: sample memory and let the guardian act now, not at the next tick."""
    if _wake is not None:
        _wake.set()


async def _memory(watcher: guardian.Guardian) -> None:
    mem = memory.event()
    await events.apublish(mem)
    await watcher.check(mem, events.apublish)


async def run() -> None:
    global _wake
    throughput, watcher = Throughput(), guardian.Guardian()
    _wake = asyncio.Event()
    tick = 0.0
    while True:
        period = conf.get("LMX_EVENTS_THROUGHPUT_S")
        try:
            await asyncio.wait_for(_wake.wait(), timeout=period)
        except TimeoutError:
            pass
        else:
            _wake.clear()
            try:
                await _memory(watcher)
            except Exception:
                log.exception("Memory check failed")
            continue
        tick += period
        try:
            sample = throughput.sample()
            if sample:
                await events.apublish(sample)
            if _due(tick, period, conf.get("LMX_EVENTS_MEMORY_S")):
                await _memory(watcher)
            if _due(tick, period, conf.get("LMX_EVENTS_HEARTBEAT_S")):
                await events.apublish({"type": "heartbeat", "uptime": uptime()})
        except Exception:
            log.exception("Metrics tick failed")


def _due(tick: float, period: float, interval: float) -> bool:
    return int(tick / interval) != int((tick - period) / interval)


def start(loop: asyncio.AbstractEventLoop) -> None:
    """Start the ticker in the server's loop (on inference.signals.server_started)."""
    global _task
    if _task is None:
        _task = loop.create_task(run())
