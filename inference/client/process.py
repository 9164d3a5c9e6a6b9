"""The engine in its own process (inference.engine.process), driven over a pipe of wire messages.

The client mirrors what request handlers, probes and monitoring read (the resident models'
descriptions, the load in progress, counters, memory) from the engine's messages, so a probe
never waits for the engine. A reader thread takes the messages; each step's events reach each
event loop in one callback. If the engine process dies, its requests fail with internal-error,
a new one starts and loads the models that were resident.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import multiprocessing
import threading
from concurrent.futures import Future

from inference import blas, wire
from inference.client import BaseEngineClient, Stream, group_lost
from inference.errors import INTERNAL, LMXError
from inference.heap import freeze_heap
from inference.store import ModelSpec

log = logging.getLogger("lmx.engine")


class EngineLost(LMXError):
    kind = INTERNAL


class ProcessEngineClient(BaseEngineClient):
    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue: int,
        prompt_cache_size: int,
        prompt_cache_bytes: int,
        disk_cache: wire.DiskCacheSettings | None = None,
        listeners=None,
        reload=None,
        log_speedups: bool = False,
        distributed: dict | None = None,
        on_group_lost=None,
    ):
        super().__init__(max_concurrent=max_concurrent, max_queue=max_queue, listeners=listeners)
        self._options = {
            "max_concurrent": max_concurrent,
            "prompt_cache_size": prompt_cache_size,
            "prompt_cache_bytes": prompt_cache_bytes,
            "disk_cache": disk_cache,
            "log_speedups": log_speedups,  # the engine process says which speed-ups it runs
            # rank 0 of a group (inference.launch): backend, sharding, timeout_s
            "distributed": distributed,
        }
        # After a crash: load a model again, `reload(info)` (blocking; runtime passes one that
        # records the load as a load through the API does).
        self._reload = reload or (lambda info: self.load(info.spec, info.options).result())
        self._on_group_lost = on_group_lost  # called once with the error when the group breaks
        # Mirrored from the engine process; plain attribute reads, no locks.
        self.models: tuple[wire.LoadedInfo, ...] = ()
        self.loading: str | None = None
        self.oom_unloaded: frozenset[str] = frozenset()
        self.counters = wire.EngineCounters()
        self.memory = wire.MemoryFigures()
        self._calls: dict[int, Future] = {}
        self._stopping = False
        self._exit_hooked = False
        self._process = None
        self._conn = None
        self._heard = False  # whether this process has spoken: one that never did is not restarted
        self._on = {
            wire.StepEvents: self._on_step,
            wire.RequestRefused: lambda m: self._deliver([(m.rid, wire.Failed(m.error))]),
            wire.EngineState: self._on_state,
            wire.ModelEvent: lambda m: self._notify(m.as_dict()),
            wire.Reply: self._on_reply,
        }

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> ProcessEngineClient:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold MLX or threads
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_engine_main, args=(theirs, self._options), name="lmx-engine", daemon=True
        )
        with blas.preloaded_for_children():
            self._process.start()
        theirs.close()
        self._conn, self._heard = ours, False
        if not self._exit_hooked:
            # Registered after multiprocessing's own exit hook, so it runs first: that hook
            # sends SIGTERM, which the engine process ignores, then waits for it forever.
            atexit.register(self._stop_at_exit)
            self._exit_hooked = True
        threading.Thread(target=self._read, args=(ours,), name="lmx-engine-reader", daemon=True).start()
        freeze_heap()
        return self

    def stop_and_join(self, timeout: float = 30.0) -> None:
        self._stopping = True
        try:
            self._send(wire.Stop())
        except LMXError:
            pass
        self._process.join(timeout)
        if self._process.is_alive():
            log.warning("The engine process did not stop within %.0f s; killing it", timeout)
            self._process.kill()  # it ignores SIGTERM (engine.process.main)
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

    # --- commands (any thread) -------------------------------------------------------------
    def load(self, spec: ModelSpec, options: wire.LoadOptions = wire.DEFAULT_OPTIONS) -> Future:
        """Load `spec` beside the resident models (a load of a model already being loaded is
        answered by that load)."""
        self.touch(spec.path)
        return self._call(lambda call: wire.Load(call, spec, options))

    def unload(self, path: str | None = None, reason: str = "request") -> Future:
        """Unload the model at `path`, or every resident model."""
        return self._call(lambda call: wire.Unload(call, path, reason))

    def drop_caches(self) -> Future:
        """Empty every resident model's prompt caches; the bytes they held."""
        return self._call(lambda call: wire.DropCaches(call))

    def tokenize(self, loaded: wire.LoadedInfo, kind: wire.TokenizeKind, payload) -> Future:
        return self._call(lambda call: wire.Tokenize(call, loaded.spec.path, kind, payload))

    def embed(self, loaded: wire.LoadedInfo, token_lists: list[list[int]], pooling: str) -> Future:
        self.touch(loaded.spec.path)
        return self._call(
            lambda call: wire.Embed(call, loaded.spec.path, loaded.loaded_at, token_lists, pooling)
        )

    def rerank(self, loaded: wire.LoadedInfo, token_lists: list[list[int]], yes: int, no: int) -> Future:
        self.touch(loaded.spec.path)
        return self._call(
            lambda call: wire.RerankPrompts(call, loaded.spec.path, loaded.loaded_at, token_lists, yes, no)
        )

    def score(self, loaded: wire.LoadedInfo, tokens: list[int], top: int) -> Future:
        self.touch(loaded.spec.path)
        return self._call(
            lambda call: wire.ScorePrompt(call, loaded.spec.path, loaded.loaded_at, tokens, top)
        )

    def call(self, fn, *args) -> Future:
        """`fn(engine, *args)` on the engine thread, between steps (tests and benchmarks)."""
        return self._call(lambda call: wire.Call(call, fn, args))

    def submit(self, request: wire.GenerationRequest, *, model: wire.LoadedInfo) -> Stream:
        """Queue a generation with `model`; raises when it cannot be had."""
        stream = self._open_stream(model.spec.path)
        try:
            self._send(wire.Generate(stream.rid, model.spec.path, request))
        except LMXError:
            self._streams.pop(stream.rid, None)
            raise
        return stream

    def rank_lost(self, reason: str) -> None:
        """A rank of the group exited (inference.launch saw it): rank 0's engine ends the group."""
        try:
            self._send(wire.RankLost(reason))
        except LMXError:
            pass  # already gone

    def _cancel(self, rid: int) -> None:
        if rid in self._streams:
            try:
                self._send(wire.Cancel(rid))
            except LMXError:
                pass  # the engine is gone, and the request with it

    def _call(self, command) -> Future:
        future: Future = Future()
        with self._lock:
            call = next(self._ids)
            self._calls[call] = future
        try:
            self._send(command(call))
        except LMXError as exc:
            self._calls.pop(call, None)
            future.set_exception(exc)
        return future

    def _send(self, message: wire.Command) -> None:
        with self._lock:
            if self.group is not None and self.group.lost:
                raise group_lost(self.group)
            try:
                self._conn.send(message)
            except (OSError, ValueError) as exc:
                raise EngineLost("The engine process is not running; LMX is restarting it. Retry.") from exc

    # --- the engine's messages (reader thread) ---------------------------------------------
    def _read(self, conn) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            self._heard = True
            try:
                self._on[type(message)](message)
            except Exception:  # a listener or a bad message must not stop the reader
                log.exception("Engine message %s failed", type(message).__name__)
        if conn is self._conn:
            self._lost()

    def _on_step(self, message: wire.StepEvents) -> None:
        self.counters = message.counters
        self.memory = message.memory
        self._deliver(message.items)

    def _on_state(self, message: wire.EngineState) -> None:
        if {(m.spec.path, m.loaded_at) for m in message.models} - {
            (m.spec.path, m.loaded_at) for m in self.models
        }:
            freeze_heap()  # what serving the first requests left behind (a load is a pause anyway)
        newly_lost = message.group is not None and message.group.lost and not (self.group and self.group.lost)
        had = self.models
        self.models, self.loading, self.oom_unloaded = message.models, message.loading, message.oom_unloaded
        self.group = message.group
        if newly_lost:  # the models it held are gone with the group: say so, as an unload does
            self._announce_gone(had, "distributed-rank-lost")
        if newly_lost and self._on_group_lost is not None:
            try:
                self._on_group_lost(group_lost(message.group))
            except Exception:  # recording it must not stop the reader
                log.exception("Recording the lost group failed")

    def _on_reply(self, message: wire.Reply) -> None:
        future = self._calls.pop(message.call, None)
        if future is None:
            return
        if message.ok:
            future.set_result(message.result)
        else:
            future.set_exception(message.result)

    def _lost(self) -> None:
        """The engine process died (or was killed): fail what it held, start a new one and load
        the model it had, unless it died before it ever spoke (that would only repeat)."""
        if self._stopping:  # stop_and_join waits for it: two threads reaping one process race
            return  # (the loser's waitpid fails, and it reads the process as alive)
        self._process.join(5)
        if self._stopping:
            return
        if self.group is not None and not self.group.lost:
            # Rank 0's engine died on its own: a new one could not rejoin the other ranks.
            reason = f"rank 0's engine process stopped (exit code {self._process.exitcode})"
            self._on_state(
                wire.EngineState((), None, self.oom_unloaded, dataclasses.replace(self.group, lost=reason))
            )
        if self.group is not None and self.group.lost:
            self._group_lost()
            return
        log.error("The engine process stopped (exit code %s); its requests failed", self._process.exitcode)
        had, loading = self.models, self.loading
        self.models, self.loading = (), None  # probes say so before requests fail
        self._announce_gone(had, "engine-stopped")
        self._fail_in_flight(
            EngineLost(
                "The engine process stopped while this request ran (see the server log). "
                "LMX restarted it; retry."
            )
        )
        if not self._heard:
            log.critical("The engine process exited before it started; LMX cannot generate")
            return
        self.start()
        log.info("Engine process restarted (pid %s)", self._process.pid)
        if loading is not None:  # the model being loaded killed it: the others come back, not it
            log.error("Loading %s crashed the engine process; it is not loaded again on its own", loading)
        for info in had:
            try:
                self._reload(info)  # on the dead process's reader thread: nothing else waits on it
            except Exception as exc:  # noqa: BLE001 - logged; the server serves on without it
                log.error("Reloading %s failed: %s", info.spec.id, getattr(exc, "message", exc))

    def _group_lost(self) -> None:
        """A rank of the group was lost and rank 0's engine ended: what it held fails with
        distributed-rank-lost. Not restarted: the other ranks are not there to follow it."""
        log.error("Distributed group lost (%s); its requests failed, /readyz reports it", self.group.lost)
        self.models, self.loading = (), None
        self._fail_in_flight(group_lost(self.group))

    def _announce_gone(self, infos, reason: str) -> None:
        """`unloaded` model events for models the engine no longer holds, saying why."""
        for info in infos:
            self._notify(
                wire.ModelEvent(
                    wire.ModelAction.UNLOADED, info.spec.id, info.vram_gb, reason=reason
                ).as_dict()
            )

    def _fail_in_flight(self, error: LMXError) -> None:
        """Every stream and every pending call ends with `error` (the engine that held them is gone)."""
        with self._lock:
            calls, self._calls = self._calls, {}
        self._deliver([(rid, wire.Failed(error)) for rid in list(self._streams)])
        for future in calls.values():
            future.set_exception(error)


def _engine_main(conn, options: dict) -> None:
    """The engine process's entry point: only that process imports the engine package."""
    from inference.engine.process import main

    main(conn, options)
