"""The process-wide engine client, created on first use with the settings of that moment."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from inference import blas, conf, launch, signals
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
                    max_queue=conf.get("LMX_MAX_QUEUE"),
                    listeners=[_announce],
                    reload=_reload,
                    on_group_lost=_record_group_lost,
                    log_speedups=True,
                    **engine_options(),
                ).start()
    return _engine


def engine_options() -> dict:
    """The engine's settings, alike on every rank of a group (inference.launch)."""
    group = launch.group_settings()
    return {
        "max_concurrent": conf.get("LMX_MAX_CONCURRENT"),
        "prompt_cache_size": conf.get("LMX_PROMPT_CACHE_SIZE"),
        "prompt_cache_bytes": conf.get("LMX_PROMPT_CACHE_BYTES"),
        # Not in a group: a rank would find on its disk what another has not written yet.
        "disk_cache": conf.disk_cache() if group is None else None,
        "distributed": group,
    }


def follow() -> int:
    """This process is a rank other than 0: follow rank 0's engine until it stops the group."""
    library = blas.preload_library()
    if library is not None and not blas.openblas_loaded():  # as rank 0's engine process starts
        os.execve(
            sys.executable,
            [sys.executable, *sys.argv],
            {**os.environ, "LD_PRELOAD": blas.with_preload(library)},
        )
    from inference.engine.process import follow as follow_rank  # this process is an engine rank

    return follow_rank(engine_options())


def running() -> EngineClient | None:
    """The engine if one was started; never starts one."""
    return _engine


def _announce(event: dict) -> None:
    """Model lifecycle events to whoever subscribed (monitoring streams them)."""
    signals.model_event.send(sender=EngineClient, event=event)


def _record_group_lost(error) -> None:
    """A distributed group broke: into the error history, whether or not a request was running."""
    signals.error_occurred.send(sender=EngineClient, error=error, endpoint="distributed-group", model="")


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
