"""The process-wide engine client, created on first use with the settings of that moment."""

from __future__ import annotations

import asyncio
import threading

from inference import conf, signals
from inference.client import EngineClient
from inference.client.process import ProcessEngineClient

_engine: EngineClient | None = None
_lock = threading.Lock()


def get_engine() -> EngineClient:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                conf.validate()
                _engine = ProcessEngineClient(
                    max_concurrent=conf.get("LMX_MAX_CONCURRENT"),
                    max_queue=conf.get("LMX_MAX_QUEUE"),
                    prompt_cache_size=conf.get("LMX_PROMPT_CACHE_SIZE"),
                    prompt_cache_bytes=conf.get("LMX_PROMPT_CACHE_BYTES"),
                    disk_cache=conf.disk_cache(),
                    listeners=[_announce],
                    reload=_reload,
                    log_speedups=True,
                ).start()
    return _engine


def running() -> EngineClient | None:
    """The engine if one was started; never starts one."""
    return _engine


def _announce(event: dict) -> None:
    """Model lifecycle events to whoever subscribed (monitoring streams them)."""
    signals.model_event.send(sender=EngineClient, event=event)


def _reload(info) -> None:
    """A model the engine process had when it died, loaded again as POST /admin/models/load
    would, with the options it had (the inventory counts the load)."""
    from inference import services

    asyncio.run(services.model_load(ref=info.spec.id, options=info.options))


def shutdown() -> None:
    global _engine
    if _engine is not None:
        _engine.stop_and_join()
        _engine = None
