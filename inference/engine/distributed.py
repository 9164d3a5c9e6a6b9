"""A distributed group of engine processes on MLX's own layer (mx.distributed).

Started by LMX's launcher (inference.launch: ranks on this machine over the ring backend) or by
`mlx.launch` (a hostfile of machines): each process finds its rank in MLX_RANK and its peers in
MLX_HOSTFILE. Rank 0 serves HTTP and schedules; every rank runs the same engine steps on its
shard of the model (inference.engine.lockstep). Objects travel as mlx-lm's server sends them:
pickled bytes summed into zeros on the other ranks (`all_sum`), no transport of LMX's own.
"""

from __future__ import annotations

import logging
import pickle
import socket
import threading
import time
from contextlib import contextmanager, nullcontext

import mlx.core as mx

from inference.wire import GroupInfo

log = logging.getLogger("lmx.engine")


class Group:
    def __init__(self, group, *, backend: str, sharding: str, timeout_s: float):
        self.group = group
        self.rank = group.rank()
        self.size = group.size()
        self.backend = backend
        self.sharding = sharding
        self.timeout_s = timeout_s
        self.lost: str | None = None
        self.memory: tuple[int, ...] = (0,) * self.size  # active bytes by rank, at the last exchange
        self._since: float | None = None  # when the collective now running started
        self.hosts = self._exchange_hosts()

    @classmethod
    def join(cls, *, backend: str, sharding: str, timeout_s: float) -> Group:
        """This process's group, from MLX_RANK and MLX_HOSTFILE (or what `mlx.launch` set)."""
        group = mx.distributed.init(strict=True, backend=backend)
        joined = cls(group, backend=backend, sharding=sharding, timeout_s=timeout_s)
        log.info("Rank %d of %d joined (%s backend)", joined.rank, joined.size, backend)
        return joined

    def info(self) -> GroupInfo:
        return GroupInfo(self.size, self.backend, self.hosts, self.sharding, self.lost)

    def share(self, obj, *, memory: int = 0, watched: bool = True):
        """Rank 0's `obj` on every rank (others pass None); every rank's `memory` figure is
        gathered on the way into `self.memory`. Raises when a rank is gone."""
        head = [0] * (1 + self.size)
        head[1 + self.rank] = memory >> 10  # KiB: int32 holds up to 2 TiB a rank
        data = pickle.dumps(obj) if self.rank == 0 else b""
        head[0] = len(data)
        head = self._collective(mx.array(head, dtype=mx.int32), watched=watched).tolist()
        if any(head[1:]):  # a liveness check (`Lockstep.alive`) carries no figures
            self.memory = tuple(kib << 10 for kib in head[1:])
        if self.rank == 0:
            self._collective(mx.array(data))
            return obj
        return pickle.loads(memoryview(self._collective(mx.zeros(head[0], dtype=mx.uint8))))

    def seed(self) -> None:
        """The same random state on every rank: unseeded sampling draws alike."""
        seed = self._collective(mx.array([int(time.time_ns() % (1 << 31)) if self.rank == 0 else 0]))
        mx.random.seed(int(seed.item()))

    def _collective(self, array: mx.array, *, watched: bool = True) -> mx.array:
        with self.watched() if watched else nullcontext():
            out = mx.distributed.all_sum(array, group=self.group)
            mx.eval(out)
        return out

    @contextmanager
    def watched(self):
        """Work that waits on the other ranks (an exchange, a step of a sharded model)."""
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def waiting_s(self) -> float:
        """How long the collective now running has waited (0 when none runs)."""
        since = self._since
        return 0.0 if since is None else time.monotonic() - since

    def _exchange_hosts(self) -> tuple[str, ...]:
        names = [0] * (64 * self.size)
        mine = socket.gethostname().encode()[:63]
        names[64 * self.rank : 64 * self.rank + len(mine)] = list(mine)
        summed = mx.distributed.all_sum(mx.array(names, dtype=mx.int32), group=self.group)
        flat = summed.tolist()
        return tuple(bytes(c for c in flat[64 * r : 64 * (r + 1)] if c).decode() for r in range(self.size))

    def lost_rank(self, exc: BaseException | None = None) -> str:
        """Which rank, as far as this one can tell: in a pair it is the other."""
        who = "rank 1" if self.size == 2 else f"a rank of {self.size}"
        if exc is None:
            return f"{who} stopped answering for {self.timeout_s:.0f} s (LMX_DISTRIBUTED_TIMEOUT_S)"
        return f"{who} was lost: {exc}"


class Watchdog:
    """Rank 0: a collective that waits past LMX_DISTRIBUTED_TIMEOUT_S means a rank stopped
    answering (a frozen process or machine). The engine thread is stuck inside MLX and cannot be
    told, so the watchdog calls `on_lost` (which ends the process; rank 0's server stays up)."""

    def __init__(self, group: Group, on_lost):
        self.group = group
        self.on_lost = on_lost
        threading.Thread(target=self._watch, name="lmx-group-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while self.group.lost is None:
            time.sleep(min(1.0, self.group.timeout_s / 4))
            if self.group.waiting_s() > self.group.timeout_s:
                self.on_lost(self.group.lost_rank())
                return
