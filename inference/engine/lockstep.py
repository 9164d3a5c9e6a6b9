"""Every rank of a distributed group runs the same engine steps: rank 0 decides, the others follow.

At the top of each engine iteration rank 0 shares the commands that came since the last one
(loads, unloads, admissions, cancels, whole-input work) and the requests past their deadline;
every rank runs them in that order and then steps, so every rank builds the same batch at every
step (mlx_lm.server shares its requests the same way). Nothing that differs between ranks may
decide what a step holds: deadlines and cancels reach the others only through here, the disk
tier of the prompt caches is off and the prefill chunk is fixed (not paced by measured time).
"""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from inference import wire
from inference.engine.distributed import Group

# What every rank must run; the rest (tokenizing, stopping the receiver) is rank 0's alone.
SHARED = (
    wire.Load,
    wire.Unload,
    wire.DropCaches,
    wire.Embed,
    wire.RerankPrompts,
    wire.ScorePrompt,
    wire.Call,
    wire.Generate,
    wire.Cancel,
)
IDLE_S = 0.25  # an idle group still exchanges this often: a lost rank is noticed while idle too


@dataclass(frozen=True)
class Expire:
    """A request past its deadline (rank 0's clock), failed alike on every rank."""

    rid: int


class Lockstep:
    def __init__(self, group: Group, dispatch: Callable[[object], None], live: Callable[[int], bool]):
        self.group = group
        self.dispatch = dispatch  # runs one shared command on this rank (engine.process._Child)
        self.live = live  # whether a request (by rid) is still running or waiting here
        self.deadlines: dict[int, float] = {}  # rank 0: rid -> monotonic deadline
        self.stopped = False
        self._posted: queue.Queue = queue.Queue()

    def post(self, message) -> None:
        """Rank 0, any thread: a command for every rank, run at the next exchange."""
        self._posted.put(message)

    def exchange(self, *, busy: bool, memory: int, patient: bool = False) -> None:
        """Every rank, engine thread: share rank 0's commands and run them here. Idle, rank 0
        waits up to IDLE_S for one. `patient`: after work whose length differs between ranks
        (a load from each rank's own disk), not timed by the watchdog."""
        messages = self._collect(busy) if self.group.rank == 0 else None
        for message in self.group.share(messages, memory=memory, watched=not patient):
            if isinstance(message, wire.Stop):
                self.stopped = True
            else:
                self.dispatch(message)

    def alive(self) -> bool:
        """After a failed step: whether the other ranks are still there (every rank asks)."""
        try:
            self.group.share(None)
            return True
        except RuntimeError:
            return False

    def _collect(self, busy: bool) -> list:
        messages = []
        try:
            messages.append(self._posted.get_nowait() if busy else self._posted.get(timeout=IDLE_S))
            while True:
                messages.append(self._posted.get_nowait())
        except queue.Empty:
            pass
        messages = [_stamped(m) for m in messages]
        now = time.monotonic()
        for rid, deadline in list(self.deadlines.items()):
            if not self.live(rid):
                del self.deadlines[rid]
            elif now > deadline:
                del self.deadlines[rid]
                messages.append(Expire(rid))
        return messages


def _stamped(message):
    """A load named by rank 0's clock on every rank (requests check the load they were sent to)."""
    if isinstance(message, wire.Load) and message.loaded_at is None:
        return dataclasses.replace(message, loaded_at=time.time())
    return message
