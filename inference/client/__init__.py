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
from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Protocol

from inference.delivery import hand_out, read_events
from inference.errors import NoModelLoaded, OomUnloaded, at_capacity
from inference.store import ModelSpec
from inference.wire import (
    LAST_EVENTS,
    Closed,
    EngineCounters,
    Event,
    Failed,
    GenerationRequest,
    LoadedInfo,
    LoadResult,
    MemoryFigures,
    TokenizeKind,
    UnloadResult,
)

log = logging.getLogger("lmx.engine")


class Stream:
    """A generation request as its handler sees it: typed events in order, and a way to cancel."""

    def __init__(self, rid: int, client: BaseEngineClient, loop: asyncio.AbstractEventLoop):
        self.rid = rid
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
    loaded: LoadedInfo | None
    loading: str | None
    oom_unloaded: bool
    counters: EngineCounters
    memory: MemoryFigures
    listeners: list
    max_concurrent: int

    @property
    def active_requests(self) -> int: ...

    @property
    def queued_requests(self) -> int: ...

    def start(self) -> EngineClient: ...

    def stop_and_join(self, timeout: float = 30.0) -> None: ...

    def load(self, spec: ModelSpec) -> Future[LoadResult]: ...

    def unload(self, reason: str = "request") -> Future[UnloadResult]: ...

    def tokenize(self, loaded: LoadedInfo, kind: TokenizeKind, payload) -> Future: ...

    def embed(self, loaded: LoadedInfo, token_lists: list[list[int]], pooling: str) -> Future: ...

    def score(self, loaded: LoadedInfo, tokens: list[int], top: int) -> Future: ...

    def submit(self, request: GenerationRequest, *, model: LoadedInfo) -> Stream: ...

    def end_streams(self, message: str) -> int: ...

    def call(self, fn, *args) -> Future: ...


class BaseEngineClient:
    """The streams in flight: capacity, delivery of each step's events to their event loops,
    and ending them all at a stop."""

    def __init__(self, *, max_concurrent: int, max_queue: int, listeners=None):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.listeners = list(listeners or [])
        self._streams: dict[int, Stream] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # the maps, and sending
        self._closing: str | None = None  # set by end_streams: why new requests are refused

    @property
    def active_requests(self) -> int:
        return len(self._streams)

    @property
    def queued_requests(self) -> int:
        return max(0, len(self._streams) - self.max_concurrent)

    def _open_stream(self) -> Stream:
        """A new stream, or the reason none can be had (stopping, no model, at capacity)."""
        if self._closing is not None:
            raise NoModelLoaded(self._closing)
        if self.loaded is None:
            raise OomUnloaded() if self.oom_unloaded else NoModelLoaded()
        with self._lock:
            if len(self._streams) >= self.max_concurrent + self.max_queue:
                raise at_capacity(self.max_concurrent, self.max_queue)
            stream = Stream(next(self._ids), self, asyncio.get_running_loop())
            self._streams[stream.rid] = stream
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
