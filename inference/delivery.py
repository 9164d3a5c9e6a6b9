"""A request's events on the asyncio side: handed to its queue, read in order (no MLX here)."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator

from inference.wire import LAST_EVENTS, Event


class _Handout:
    """One event loop's backlog of (receiver, events) turns, handed out one receiver per turn of
    the loop: woken together, 32 streams would format and write their chunks in one turn, and a
    probe arriving meanwhile would wait for all of them. One queue for every step, so a step's
    events never overtake the step before's: with a chain of callbacks per step, a receiver
    listed early in a step got its token before one listed late in the step before got the
    token ahead of it, and a stream's text came out with two tokens swapped."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.backlog: deque = deque()
        self.scheduled = False

    def add(self, turns: list) -> None:
        self.backlog.extend(turns)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._next)

    def _next(self) -> None:
        receiver, items = self.backlog.popleft()
        for item in items:
            receiver.queue.put_nowait(item)
        if self.backlog:
            self.loop.call_soon(self._next)
        else:
            self.scheduled = False


_handouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def hand_out(turns: list, loop: asyncio.AbstractEventLoop) -> None:
    """In `loop`: `turns`, (receiver with a `.queue`, [events]) pairs of one step, after every
    turn handed to that loop before."""
    with _lock:
        handout = _handouts.get(loop)
        if handout is None:
            handout = _handouts[loop] = _Handout(loop)
    handout.add(turns)


async def read_events(queue: asyncio.Queue) -> AsyncIterator[Event]:
    """A request's events from its queue, up to and including its last (Done or Failed)."""
    while True:
        item = await queue.get()
        yield item
        if isinstance(item, LAST_EVENTS):
            return
