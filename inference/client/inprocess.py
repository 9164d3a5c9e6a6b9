"""The engine thread in this process, behind the same protocol as the engine process: for tests
and tools that want MLX state at hand. LMX itself serves with client.process."""

from __future__ import annotations

import os
from concurrent.futures import Future

from inference import wire
from inference.client import BaseEngineClient, Stream
from inference.errors import LMXError, to_lmx_error
from inference.store import ModelSpec


class _ClientOutbox:
    """A step's events go straight to the client's streams (engine thread)."""

    def __init__(self, client: InProcessEngineClient):
        self.client = client
        self._items: list[tuple[int, wire.Event]] = []

    def put(self, slot, item: wire.Event) -> None:
        self._items.append((slot.rid, item))

    def flush(self) -> None:
        if self._items:
            items, self._items = self._items, []
            self.client._deliver(items)


class InProcessEngineClient(BaseEngineClient):
    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue: int,
        prompt_cache_size: int,
        prompt_cache_bytes: int,
        disk_cache: wire.DiskCacheSettings | None = None,
        listeners=None,
    ):
        from inference.engine.core import Engine

        super().__init__(max_concurrent=max_concurrent, max_queue=max_queue, listeners=listeners)
        self.engine = Engine(
            max_concurrent=max_concurrent,
            prompt_cache_size=prompt_cache_size,
            prompt_cache_bytes=prompt_cache_bytes,
            disk_cache=disk_cache,
            announce=lambda event: self._notify(event.as_dict()),
            outbox=_ClientOutbox(self),
        )
        self._slots: dict = {}

    # The engine's own state, read as the process client's mirror is.
    @property
    def models(self) -> tuple[wire.LoadedInfo, ...]:
        return tuple(loaded.info() for loaded in self.engine.models)

    @property
    def loading(self) -> str | None:
        return self.engine.loading

    @property
    def oom_unloaded(self) -> frozenset[str]:
        return self.engine.oom_unloaded

    @property
    def counters(self) -> wire.EngineCounters:
        return self.engine.counters

    @property
    def memory(self) -> wire.MemoryFigures:
        return self.engine.memory

    @property
    def pid(self) -> int:
        return os.getpid()  # the engine runs in this process

    def start(self) -> InProcessEngineClient:
        self.engine.start()
        return self

    def stop_and_join(self, timeout: float = 30.0) -> None:
        self.engine.stop_and_join(timeout)

    def load(self, spec: ModelSpec, options: wire.LoadOptions = wire.DEFAULT_OPTIONS) -> Future:
        self.touch(spec.path)
        return self.engine.load(spec, options)

    def unload(self, path: str | None = None, reason: str = "request") -> Future:
        return self.engine.unload(path, reason)

    def drop_caches(self) -> Future:
        return self.engine.drop_caches()

    def tokenize(self, loaded: wire.LoadedInfo, kind: wire.TokenizeKind, payload) -> Future:
        from inference.engine import tokens

        path = loaded.spec.path
        return self.engine.run_on_engine(
            lambda: tokens.tokenize(self.engine.model_for(path).tokenizer, kind, payload)
        )

    def embed(self, loaded: wire.LoadedInfo, token_lists: list[list[int]], pooling: str) -> Future:
        self.touch(loaded.spec.path)
        return self.engine.embed(loaded.spec.path, loaded.loaded_at, token_lists, pooling)

    def rerank(self, loaded: wire.LoadedInfo, token_lists: list[list[int]], yes: int, no: int) -> Future:
        self.touch(loaded.spec.path)
        return self.engine.rerank(loaded.spec.path, loaded.loaded_at, token_lists, yes, no)

    def score(self, loaded: wire.LoadedInfo, tokens: list[int], top: int) -> Future:
        self.touch(loaded.spec.path)
        return self.engine.score(loaded.spec.path, loaded.loaded_at, tokens, top)

    def call(self, fn, *args) -> Future:
        return self.engine.run_on_engine(lambda: fn(self.engine, *args))

    def submit(self, request: wire.GenerationRequest, *, model: wire.LoadedInfo) -> Stream:
        from inference.engine.slot import tagged_slot

        stream = self._open_stream(model.spec.path)
        try:
            tokenizer = self.engine.model_for(model.spec.path).tokenizer
            slot = tagged_slot(stream.rid, self._slots, request, tokenizer)
        except Exception as exc:
            self._streams.pop(stream.rid, None)
            raise exc if isinstance(exc, LMXError) else to_lmx_error(exc) from exc
        self._slots[stream.rid] = slot
        self.engine.submit(slot, model.spec.path)
        return stream

    def _cancel(self, rid: int) -> None:
        slot = self._slots.get(rid)
        if slot is not None:
            slot.cancel()
