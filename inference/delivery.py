"""A request's events on the asyncio side: handed to its queue, read in order (no MLX here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from inference.wire import LAST_EVENTS, Event


def hand_out(turns: list, loop: asyncio.AbstractEventLoop) -> None:
    """`turns`: (receiver with a `.queue`, [events]) pairs. One receiver per turn of the event
    loop: woken together, 32 streams would format and write their chunks in one turn, and a
    probe arriving meanwhile would wait for all of them."""
    (receiver, items), rest = turns[0], turns[1:]
    for item in items:
        receiver.queue.put_nowait(item)
    if rest:
        loop.call_soon(hand_out, rest, loop)


async def read_events(queue: asyncio.Queue) -> AsyncIterator[Event]:
    """A request's events from its queue, up to and including its last (Done or Failed)."""
    while True:
        item = await queue.get()
        yield item
        if isinstance(item, LAST_EVENTS):
            return
