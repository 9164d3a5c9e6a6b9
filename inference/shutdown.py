"""An orderly stop: requests in flight end with an error their clients can read and operators
find in the error history, before Daphne closes the connections.

Daphne's own stop cancels every handler at once, so a stream in flight was cut mid-chunk
("incomplete chunked read") and nothing was recorded. lmx_serve runs `drain` first."""

from __future__ import annotations

import asyncio
import logging

from inference import runtime

log = logging.getLogger("lmx")

MESSAGE = "LMX is shutting down. Retry once it is back."
_handlers: set[asyncio.Task] = set()


def track(task: asyncio.Task) -> None:
    """A generation handler (HTTP or WebSocket) that drain waits for."""
    _handlers.add(task)
    task.add_done_callback(_handlers.discard)


async def drain(*, timeout: float = 5.0) -> int:
    """End the generations in flight with no-model-loaded (MESSAGE), refuse new ones, and wait
    up to `timeout` seconds for their handlers to send and record the error. Returns how many
    ended."""
    engine = runtime.running()
    ended = engine.end_streams(MESSAGE) if engine is not None else 0
    if ended:
        log.info("Shutting down: ended %d request%s in flight", ended, "" if ended == 1 else "s")
    pending = [task for task in _handlers if not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
        await asyncio.sleep(0.05)  # Twisted writes what they sent on a later turn of the loop
    return ended
