"""The server process's side of the engine (inference.engine_process holds the other side).

`EngineClient` has what request handlers, probes and the monitoring read: the loaded model's
description, the load in progress, counters and memory figures, mirrored from the engine
process's messages, so a probe reads memory and never waits for the engine. A reader thread
takes the engine's messages; each step's events reach each event loop in one callback. If the
engine process dies, its requests fail with internal-error, a new one starts and loads the
model that was loaded.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import multiprocessing
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future

from inference import engine_process
from inference.engine import EngineCounters, LoadedInfo, MemoryFigures, freeze_heap, notify
from inference.errors import INTERNAL, LMXError, NoModelLoaded, OomUnloaded, at_capacity
from inference.generation import GenerationRequest, _hand_out, read_events
from inference.store import ModelSpec

log = logging.getLogger("lmx.engine")
_ENDS = ("done", "error", "closed")


class EngineLost(LMXError):
    kind = INTERNAL


class Stream:
    """A generation request as its handler sees it: events in order, and a way to cancel."""

    def __init__(self, rid: int, client: EngineClient, loop: asyncio.AbstractEventLoop):
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

    def events(self) -> AsyncIterator[tuple]:
        return read_events(self.queue)


class EngineClient:
    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue: int,
        prompt_cache_size: int,
        prompt_cache_bytes: int,
        listeners=None,
        reload=None,
    ):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self._options = {
            "max_concurrent": max_concurrent,
            "max_queue": max_queue,
            "prompt_cache_size": prompt_cache_size,
            "prompt_cache_bytes": prompt_cache_bytes,
        }
        self.listeners = list(listeners or [])
        # After a crash: load the model again, `reload(spec)` (blocking; runtime passes one that
        # records the load in the inventory as a load through the API does).
        self._reload = reload or (lambda spec: self.load(spec).result())
        # Mirrored from the engine process; plain attribute reads, no locks.
        self.loaded: LoadedInfo | None = None
        self.loading: str | None = None
        self.oom_unloaded = False
        self.counters = EngineCounters()
        self.memory = MemoryFigures()
        self._streams: dict[int, Stream] = {}
        self._calls: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # the maps above, and sending
        self._stopping = False
        self._closing: str | None = None  # set by end_streams: why new requests are refused
        self._exit_hooked = False
        self._process = None
        self._conn = None
        self._heard = False  # whether this process has spoken: one that never did is not restarted

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> EngineClient:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold MLX or threads
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=engine_process.main, args=(theirs, self._options), name="lmx-engine", daemon=True
        )
        self._process.start()
        theirs.close()
        self._conn, self._heard = ours, False
        if not self._exit_hooked:
            # Registered after multiprocessing's own exit hook, so it runs first: that hook
            # sends SIGTERM, which the engine process ignores, then waits for it forever.
            atexit.register(self._stop_at_exit)
            self._exit_hooked = True
        threading.Thread(target=self._read, args=(ours,), name="lmx-engine-reader", daemon=True).start()
        freeze_heap()  # this process's long-lived objects (Django, Twisted): see engine.freeze_heap
        return self

    def stop_and_join(self, timeout: float = 30.0) -> None:
        self._stopping = True
        try:
            self._send(("stop",))
        except LMXError:
            pass
        self._process.join(timeout)
        if self._process.is_alive():
            log.warning("The engine process did not stop within %.0f s; killing it", timeout)
            self._process.kill()  # it ignores SIGTERM (engine_process.main)
            self._process.join(5)
        elif self._process.exitcode:
            log.warning("The engine process ended with exit code %s at shutdown", self._process.exitcode)

    def _stop_at_exit(self) -> None:
        """A process that started an engine and exits without stopping it (a shell, a script)."""
        if self._process is not None and self._process.is_alive():
            self.stop_and_join(timeout=10)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def active_requests(self) -> int:
        return len(self._streams)

    @property
    def queued_requests(self) -> int:
        return max(0, len(self._streams) - self.max_concurrent)

    # --- commands (any thread) -------------------------------------------------------------
    def load(self, spec: ModelSpec) -> Future:
        """Load `spec`, replacing the resident model (Engine.load: a load of a model already
        being loaded is answered by that load)."""
        return self._call("load", spec)

    def unload(self, reason: str = "request") -> Future:
        return self._call("unload", reason)

    def tokenize(self, loaded: LoadedInfo, kind: str, payload) -> Future:
        """Token ids from the loaded model's tokenizer (see inference.tokens.tokenize)."""
        return self._call("tokenize", loaded.spec.path, kind, payload)

    def call(self, fn, *args) -> Future:
        """`fn(engine, *args)` on the engine thread, between steps; `fn` must be a module-level
        function (it travels by name) and its result must pickle."""
        return self._call("call", fn, args)

    def submit(self, request: GenerationRequest, *, model: LoadedInfo) -> Stream:
        """Queue a generation with `model`; raises when it cannot be had."""
        if self._closing is not None:
            raise NoModelLoaded(self._closing)
        if self.loaded is None:
            raise OomUnloaded() if self.oom_unloaded else NoModelLoaded()
        with self._lock:
            if len(self._streams) >= self.max_concurrent + self.max_queue:
                raise at_capacity(self.max_concurrent, self.max_queue)
            stream = Stream(next(self._ids), self, asyncio.get_running_loop())
            self._streams[stream.rid] = stream
        try:
            self._send(("generate", stream.rid, model.spec.path, request))
        except LMXError:
            self._streams.pop(stream.rid, None)
            raise
        return stream

    def end_streams(self, message: str) -> int:
        """End every request in flight with a no-model-loaded error saying `message`, and refuse
        new ones with it (the server is stopping). The engine drops them; returns how many."""
        with self._lock:
            self._closing = message
            rids = list(self._streams)
        for rid in rids:
            self._cancel(rid)
        self._deliver([(rid, ("error", NoModelLoaded(message))) for rid in rids])
        return len(rids)

    def _cancel(self, rid: int) -> None:
        if rid in self._streams:
            try:
                self._send(("cancel", rid))
            except LMXError:
                pass  # the engine is gone, and the request with it

    def _call(self, kind: str, *args) -> Future:
        future: Future = Future()
        with self._lock:
            call = next(self._ids)
            self._calls[call] = future
        try:
            self._send((kind, call, *args))
        except LMXError as exc:
            self._calls.pop(call, None)
            future.set_exception(exc)
        return future

    def _send(self, message: tuple) -> None:
        with self._lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError) as exc:
                raise EngineLost("The engine process is not running; LMX is restarting it. Retry.") from exc

    # --- the engine's messages (reader thread) ---------------------------------------------
    def _read(self, conn) -> None:
        while True:
            try:
                kind, *args = conn.recv()
            except (EOFError, OSError):
                break
            self._heard = True
            try:
                getattr(self, f"_on_{kind}")(*args)
            except Exception:  # a listener or a bad message must not stop the reader
                log.exception("Engine message %s failed", kind)
        if conn is self._conn:
            self._lost()

    def _on_events(self, items: list, counters: tuple, memory: MemoryFigures) -> None:
        self.counters = EngineCounters(*counters)
        self.memory = memory
        self._deliver(items)

    def _on_failed(self, rid: int, error: LMXError) -> None:
        self._deliver([(rid, ("error", error))])

    def _deliver(self, items: list[tuple[int, tuple]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, dict[Stream, list[tuple]]] = {}
        for rid, item in items:
            stream = self._streams.get(rid)
            if stream is None:
                continue
            if item[0] in _ENDS:
                self._streams.pop(rid, None)
            if item[0] != "closed":  # nobody reads a cancelled stream
                by_loop.setdefault(stream.loop, {}).setdefault(stream, []).append(item)
        for loop, turns in by_loop.items():
            try:
                loop.call_soon_threadsafe(_hand_out, list(turns.items()), loop)
            except RuntimeError:  # that loop is gone: nobody is listening
                for stream in turns:
                    stream.cancel()

    def _on_state(self, loaded: LoadedInfo | None, loading: str | None, oom_unloaded: bool) -> None:
        if loaded is not None and loaded != self.loaded:
            freeze_heap()  # what serving the first requests left behind (a load is a pause anyway)
        self.loaded, self.loading, self.oom_unloaded = loaded, loading, oom_unloaded

    def _on_notify(self, event: dict) -> None:
        notify(self.listeners, event)

    def _on_reply(self, call: int, ok: bool, result) -> None:
        future = self._calls.pop(call, None)
        if future is None:
            return
        if ok:
            future.set_result(result)
        else:
            future.set_exception(result)

    def _lost(self) -> None:
        """The engine process died (or was killed): fail what it held, start a new one and load
        the model it had, unless it died before it ever spoke (that would only repeat)."""
        if self._stopping:  # stop_and_join waits for it: two threads reaping one process race
            return  # (the loser's waitpid fails, and it reads the process as alive)
        self._process.join(5)
        if self._stopping:
            return
        log.error("The engine process stopped (exit code %s); its requests failed", self._process.exitcode)
        had, loading = self.loaded, self.loading
        self.loaded, self.loading = None, None  # probes say so before requests fail
        if had is not None:
            self._on_notify(
                {
                    "type": "model_event",
                    "action": "unloaded",
                    "model": had.spec.id,
                    "vram_gb": had.vram_gb,
                    "load_time_ms": None,
                    "reason": "engine-stopped",
                }
            )
        error = EngineLost(
            "The engine process stopped while this request ran (see the server log). LMX restarted it; retry."
        )
        with self._lock:
            calls, self._calls = self._calls, {}
        self._deliver([(rid, ("error", error)) for rid in list(self._streams)])
        for future in calls.values():
            future.set_exception(error)
        if not self._heard:
            log.critical("The engine process exited before it started; LMX cannot generate")
            return
        self.start()
        log.info("Engine process restarted (pid %s)", self._process.pid)
        if had is not None and loading is None:  # not while a load was what killed it
            try:
                self._reload(had.spec)  # on the dead process's reader thread: nothing else waits on it
            except Exception as exc:  # noqa: BLE001 - logged; the server serves on without a model
                log.error("Reloading %s failed: %s", had.spec.id, getattr(exc, "message", exc))
