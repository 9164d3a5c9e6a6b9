"""The server side's view of the engine: the EngineClient protocol and what both clients share.

Two siblings implement it: `process.ProcessEngineClient` (the engine in its own process: what
LMX serves with) and `inprocess.InProcessEngineClient` (the engine thread in this process: tests
and tools). Request handlers, probes and monitoring only see this protocol and inference.wire;
nothing here imports MLX. Capacity (how many requests may run and wait) is decided here, on the
client side; whether a model can take a request is the engine's word, mirrored for early refusal.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Protocol

from inference.delivery import hand_out, read_events
from inference.errors import DistributedRankLost, NoModelLoaded, OomUnloaded, at_capacity
from inference.store import ModelSpec
from inference.wire import (
    LAST_EVENTS,
    Closed,
    EngineCounters,
    Event,
    Failed,
    GenerationRequest,
    GroupInfo,
    LoadedInfo,
    LoadOptions,
    LoadResult,
    MemoryFigures,
    TokenizeKind,
    UnloadResult,
)

log = logging.getLogger("lmx.engine")


class Stream:
    """A generation request as its handler sees it: typed events in order, and a way to cancel."""

    def __init__(self, rid: int, client: BaseEngineClient, loop: asyncio.AbstractEventLoop, path: str = ""):
        self.rid = rid
        self.path = path  # the model it runs on
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self._client = client

    def cancel(self) -> None:
        """No-op once the request has ended; otherwise the engine drops it before its next step."""
        if not self.cancelled:
            self.cancelled = True
            self._client._cancel(self.rid)

    def events(self) -> AsyncIterator[Event]:
        return read_events(self.queue)


class EngineClient(Protocol):
    models: tuple[LoadedInfo, ...]  # the resident models, in load order
    loading: str | None
    oom_unloaded: frozenset[str]  # paths of models the guardian unloaded, until loaded again
    group: GroupInfo | None  # the distributed group the engine runs on, if any
    counters: EngineCounters
    memory: MemoryFigures
    listeners: list
    max_concurrent: int

    @property
    def loaded(self) -> LoadedInfo | None: ...

    @property
    def active_requests(self) -> int: ...

    def active_for(self, path: str) -> int: ...

    def touch(self, path: str) -> None: ...

    @property
    def queued_requests(self) -> int: ...

    def start(self) -> EngineClient: ...

    def stop_and_join(self, timeout: float = 30.0) -> None: ...

    def load(self, spec: ModelSpec, options: LoadOptions = ...) -> Future[LoadResult]: ...

    def unload(self, path: str | None = None, reason: str = "request") -> Future[UnloadResult]: ...

    def drop_caches(self) -> Future[int]: ...

    def tokenize(self, loaded: LoadedInfo, kind: TokenizeKind, payload) -> Future: ...

    def embed(self, loaded: LoadedInfo, token_lists: list[list[int]], pooling: str) -> Future: ...

    def rerank(self, loaded: LoadedInfo, token_lists: list[list[int]], yes: int, no: int) -> Future: ...

    def score(self, loaded: LoadedInfo, tokens: list[int], top: int) -> Future: ...

    def submit(self, request: GenerationRequest, *, model: LoadedInfo) -> Stream: ...

    def end_streams(self, message: str) -> int: ...

    def call(self, fn, *args) -> Future: ...


class BaseEngineClient:
    """The streams in flight: capacity, delivery of each step's events to their event loops,
    and ending them all at a stop."""

    group: GroupInfo | None = None

    def __init__(self, *, max_concurrent: int, max_queue: int, listeners=None):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.listeners = list(listeners or [])
        self._streams: dict[int, Stream] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # the maps, and sending
        self._closing: str | None = None  # set by end_streams: why new requests are refused
        self.last_used: dict[str, float] = {}  # by model path: when a request last started or ended

    @property
    def loaded(self) -> LoadedInfo | None:
        """The most recently used resident model (the one /readyz names)."""
        models = self.models
        if not models:
            return None
        order = {m.spec.path: i for i, m in enumerate(models)}  # unused ones: the latest loaded
        return max(models, key=lambda m: (self.last_used.get(m.spec.path, 0.0), order[m.spec.path]))

    def resident(self, path: str) -> LoadedInfo | None:
        return next((m for m in self.models if m.spec.path == path), None)

    def touch(self, path: str) -> None:
        self.last_used[path] = time.monotonic()

    @property
    def active_requests(self) -> int:
        return len(self._streams)

    def active_for(self, path: str) -> int:
        """Requests running or queued on the model at `path`."""
        return sum(1 for stream in list(self._streams.values()) if stream.path == path)

    @property
    def queued_requests(self) -> int:
        return max(0, len(self._streams) - self.max_concurrent)

    def _open_stream(self, path: str) -> Stream:
        """A new stream on the model at `path`, or the reason none can be had (stopping, the
        model not resident, at capacity)."""
        if self._closing is not None:
            raise NoModelLoaded(self._closing)
        if self.group is not None and self.group.lost:
            raise group_lost(self.group)
        if self.resident(path) is None:
            raise OomUnloaded() if path in self.oom_unloaded else NoModelLoaded()
        with self._lock:
            if len(self._streams) >= self.max_concurrent + self.max_queue:
                raise at_capacity(self.max_concurrent, self.max_queue)
            stream = Stream(next(self._ids), self, asyncio.get_running_loop(), path)
            self._streams[stream.rid] = stream
        self.touch(path)
        return stream

    def end_streams(self, message: str) -> int:
        """End every request in flight with a no-model-loaded error saying `message`, and refuse
        new ones with it (the server is stopping). The engine drops them; returns how many."""
        with self._lock:
            self._closing = message
            rids = list(self._streams)
        for rid in rids:
            self._cancel(rid)
        self._deliver([(rid, Failed(NoModelLoaded(message))) for rid in rids])
        return len(rids)

    def _cancel(self, rid: int) -> None:
        raise NotImplementedError

    def _deliver(self, items: list[tuple[int, Event]]) -> None:
        """Each stream's events to its event loop, one callback per loop for the whole step."""
        by_loop: dict[asyncio.AbstractEventLoop, dict[Stream, list[Event]]] = {}
        for rid, item in items:
            stream = self._streams.get(rid)
            if stream is None:
                continue
            if isinstance(item, LAST_EVENTS):
                self._streams.pop(rid, None)
                self.touch(stream.path)  # idle time counts from the end of its last request
            if not isinstance(item, Closed):  # nobody reads a cancelled stream
                by_loop.setdefault(stream.loop, {}).setdefault(stream, []).append(item)
        for loop, turns in by_loop.items():
            try:
                loop.call_soon_threadsafe(hand_out, list(turns.items()), loop)
            except RuntimeError:  # that loop is gone: nobody is listening
                for stream in turns:
                    stream.cancel()

    def _notify(self, event: dict) -> None:
        """Model lifecycle events to each listener; a failing listener never breaks delivery."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("Engine listener failed")


def group_lost(group: GroupInfo) -> DistributedRankLost:
    return DistributedRankLost(
        f"LMX's distributed group of {group.size} ranks broke: {group.lost}. Requests cannot run "
        "until LMX is restarted with every rank running.",
        retry_after=30,
    )
