"""The engine: the one thread that owns MLX (in the engine process, or in-process for tests).

Other threads hand it jobs through a queue and get answers through futures (load, unload,
embed) or a per-request slot (generation). Between jobs it runs a step of each resident model
that has work, in turn (each model its own batch; none starves another); after each it publishes
the step's events with fresh memory figures.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import mlx.core as mx

from inference.engine import embedding, loading, reranking, scoring
from inference.engine.disk_cache import DiskTier
from inference.engine.mlx_compat import batch_layers
from inference.engine.model_host import LoadedModel, ModelHost
from inference.engine.slot import Outbox, Slot
from inference.errors import NoModelLoaded, to_lmx_error
from inference.heap import freeze_heap
from inference.store import ModelSpec
from inference.wire import (
    DEFAULT_OPTIONS,
    DiskCacheSettings,
    EngineCounters,
    LoadOptions,
    MemoryFigures,
    ModelEvent,
)

log = logging.getLogger("lmx.engine")

# The engine thread holds the GIL while it builds a step's graph; a thread that needs it back
# (the process's receiver, the tokenizers) waits up to the switch interval, 5 ms by default.
SWITCH_INTERVAL_S = 0.0002


@dataclass
class _Job:
    """Work for the engine thread: `run()` between steps, its result on `future`; or a request
    to admit (`slot`) for the model at `path`."""

    run: Callable[[], object] | None = None
    slot: Slot | None = None
    path: str = ""
    future: Future = field(default_factory=Future)


_WAKE = _Job()


class _GroupLost(Exception):
    """A rank of the distributed group is gone (found after a failed step)."""


class Engine:
    def __init__(
        self,
        *,
        max_concurrent: int,
        prompt_cache_size: int,
        prompt_cache_bytes: int,
        disk_cache: DiskCacheSettings | None = None,
        listeners=None,
        announce: Callable[[ModelEvent], None] | None = None,
        outbox=None,
        on_state: Callable[[Engine], None] | None = None,
        group=None,
    ):
        self.max_concurrent = max_concurrent
        # A distributed group (engine.distributed.Group): every rank steps alike through
        # `lockstep` (engine.lockstep.Lockstep, set by the process before start); when the group
        # breaks, `on_group_lost(reason)` ends this process.
        self.group = group
        self.lockstep = None
        self.on_group_lost: Callable[[str], None] | None = None
        self.counters = EngineCounters()
        self.memory = MemoryFigures()
        self.read_memory_each_step = True  # a benchmark measures the cost of the reading
        # Model lifecycle events, from the engine thread: typed to `announce`, as dicts to listeners.
        self.listeners = list(listeners or [])
        self._announce_to = announce
        self.on_state = on_state  # called when the resident models, loading or oom_unloaded change
        self._outbox = outbox or Outbox()
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._pending_loads: dict[str, Future] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmx-engine", daemon=True)
        self.host = ModelHost(
            max_concurrent=max_concurrent,
            prompt_cache_size=prompt_cache_size,
            prompt_cache_bytes=prompt_cache_bytes,
            disk=DiskTier(disk_cache.root, budget_bytes=disk_cache.budget_bytes, block=disk_cache.block)
            if disk_cache is not None
            else None,
            counters=self.counters,
            announce=self._announce,
            state_changed=self._state_changed,
            group=group,
        )

    # State read without locks by other threads: plain attribute reads are atomic.
    @property
    def loaded(self) -> LoadedModel | None:
        """The most recently loaded resident model."""
        return self.host.loaded

    @property
    def models(self) -> list[LoadedModel]:
        return [r.loaded for r in self.host.residents.values()]

    @property
    def loading(self) -> str | None:
        return self.host.loading

    @property
    def oom_unloaded(self) -> frozenset[str]:
        return self.host.oom_unloaded

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> Engine:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        freeze_heap()
        self._thread.start()
        return self

    def stop_and_join(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._jobs.put(_WAKE)
        self._thread.join(timeout)

    def join(self) -> None:
        """Until the engine thread ends (a follower rank: when rank 0 stops the group)."""
        self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # --- jobs (any thread) -----------------------------------------------------------------
    def load(
        self, spec: ModelSpec, options: LoadOptions = DEFAULT_OPTIONS, loaded_at: float | None = None
    ) -> Future:
        """Load `spec` beside the resident models. A load of a model already being loaded shares
        that load's future instead of loading it twice."""
        with self._lock:
            pending = self._pending_loads.get(spec.id)
            if pending is not None and not pending.done():
                return pending
            job = _Job(run=lambda: self.host.load(spec, options, loaded_at))
            self._pending_loads[spec.id] = job.future
        job.future.add_done_callback(lambda done: self._forget_load(spec.id, done))
        self._jobs.put(job)
        return job.future

    def _forget_load(self, model_id: str, done: Future) -> None:
        with self._lock:
            if self._pending_loads.get(model_id) is done:
                del self._pending_loads[model_id]

    def unload(self, path: str | None = None, reason: str = "request") -> Future:
        """Unload the model at `path`, or every resident model."""
        return self.run_on_engine(lambda: self.host.unload(path, reason))

    def drop_caches(self) -> Future:
        return self.run_on_engine(self.host.drop_prompt_caches)

    def _whole_inputs(self, path: str, loaded_at: float, work: Callable[[LoadedModel], object]) -> Future:
        """`work(loaded)` between steps, with the model the request was checked against; its
        inputs are whole prompts, so the quantized layers fold their rows."""

        def run():
            loaded = self.host.model_for(path, loaded_at)
            batch_layers.use(loaded.model, batched=True)
            return work(loaded)

        return self.run_on_engine(run)

    def embed(self, path: str, loaded_at: float, token_lists: list[list[int]], pooling: str) -> Future:
        """Unit-length embeddings (inference.engine.embedding)."""
        return self._whole_inputs(
            path, loaded_at, lambda loaded: embedding.embed_tokens(loaded.model, token_lists, pooling=pooling)
        )

    def rerank(self, path: str, loaded_at: float, token_lists: list[list[int]], yes: int, no: int) -> Future:
        """A reranker's P(yes) after each prompt (inference.engine.reranking)."""
        return self._whole_inputs(
            path, loaded_at, lambda loaded: reranking.yes_no_scores(loaded.model, token_lists, yes=yes, no=no)
        )

    def score(self, path: str, loaded_at: float, tokens: list[int], top: int) -> Future:
        """A prompt's own log-probabilities (inference.engine.scoring)."""
        return self._whole_inputs(
            path,
            loaded_at,
            lambda loaded: scoring.score_tokens(
                loaded.model, tokens, top, lambda t: loaded.tokenizer.decode([t])
            ),
        )

    def submit(self, slot: Slot, path: str | None = None) -> None:
        """Queue a generation with the model at `path` (None: the latest loaded, for tools with
        one model); its events arrive on `slot` (a refusal too)."""
        if path is None:
            loaded = self.host.loaded
            path = loaded.spec.path if loaded is not None else ""
        slot.outbox = self._outbox
        slot.wake_engine = self.wake
        self._jobs.put(_Job(slot=slot, path=path))

    def wake(self) -> None:
        self._jobs.put(_WAKE)

    def run_on_engine(self, fn: Callable[[], object]) -> Future:
        """Run `fn()` on the engine thread, between steps."""
        job = _Job(run=fn)
        self._jobs.put(job)
        return job.future

    def model_for(self, path: str, loaded_at: float | None = None) -> LoadedModel:
        return self.host.model_for(path, loaded_at)

    # --- the thread ----------------------------------------------------------------------
    def _announce(self, event: ModelEvent) -> None:
        """Model lifecycle events to each listener; a failing listener never breaks the engine."""
        if self._announce_to is not None:
            self._announce_to(event)
        for listener in self.listeners:
            try:
                listener(event.as_dict())
            except Exception:
                log.exception("Engine listener failed")

    def _state_changed(self) -> None:
        # Memory figures first: a probe that sees the new model resident must not read the
        # memory of before its load.
        self._publish()
        if self.on_state is not None:
            self.on_state(self)

    def _read_memory(self) -> None:
        self.memory = MemoryFigures(
            mx.get_active_memory(),
            mx.get_peak_memory(),
            mx.get_cache_memory(),
            self.memory.total,
            kv_cache=self.host.kv_cache_bytes(),
            ranks=self.group.memory if self.group is not None else (),
        )
        if self.host.disk is not None:
            self.counters.disk_cache_bytes = self.host.disk.size
            self.counters.disk_cache_blocks = self.host.disk.count

    def _publish(self) -> None:
        """After each job and step: fresh memory figures, then the step's events."""
        if self.read_memory_each_step:
            try:
                self._read_memory()
            except Exception:  # stale figures for a step, never a stopped engine
                log.exception("Reading memory figures failed")
        self._outbox.flush()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            # MLX keeps each thread's streams in thread-local storage whose destructors take the
            # GIL; left to the thread's exit they raced the interpreter's finalization (an abort
            # at most stops). MLX asks every thread that used it to clear them before it ends.
            mx.clear_streams()

    def _serve(self) -> None:
        self.memory = MemoryFigures(total=loading.device_memory())
        self._publish()
        if self.lockstep is not None:
            self._serve_in_step()
            return
        while not self._stop.is_set():
            try:
                # Idle: sleep until a job comes. Busy, or warm-up left: only pick up what is there.
                job = self._jobs.get_nowait() if self.host.busy or self.host.warming else self._jobs.get()
            except queue.Empty:
                job = None
            while job is not None:
                self._handle(job)
                self._publish()
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    job = None
            if self._stop.is_set():
                break
            if self.host.busy:
                self._step()
            elif self.host.warming:
                self.host.warming.run_next()
        self._shut_down()

    def _serve_in_step(self) -> None:
        """A rank of a group: rank 0's commands at the top of each iteration, then the same
        jobs and step on every rank (engine.lockstep). A rank lost ends this process."""
        try:
            self.group.seed()
            ran = False
            while not self.lockstep.stopped:
                self.lockstep.exchange(busy=self.host.busy, memory=mx.get_active_memory(), patient=ran)
                ran = self._run_jobs()
                if self.host.busy and not self.lockstep.stopped:
                    with self.group.watched():
                        self._step()
        except _GroupLost as lost:
            self._group_lost(str(lost))
            return
        except RuntimeError as exc:  # a collective whose peer is gone
            self._group_lost(self.group.lost_rank(exc))
            return
        self._shut_down()

    def _shut_down(self) -> None:
        self.host.fail_all(NoModelLoaded("LMX is shutting down."))
        self._publish()
        self.host.drop()

    def _run_jobs(self) -> bool:
        """The jobs queued by this iteration's commands; whether any ran."""
        ran = False
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return ran
            ran = ran or job is not _WAKE
            self._handle(job)
            self._publish()

    def _group_lost(self, reason: str) -> None:
        log.error("Distributed group lost: %s", reason)
        self.group.lost = reason
        if self.on_group_lost is not None:
            self.on_group_lost(reason)

    def _step(self) -> None:
        """One step of each resident model with work, in load order; a model on its own thread
        (engine.model_thread) steps there while the others step here, and the engine waits for
        it before the next round."""
        busy = [r for r in self.host.residents.values() if r.scheduler.busy]
        elsewhere = [r.thread.submit(lambda r=r: self._step_one(r)) for r in busy if r.thread is not None]
        for resident in busy:
            if resident.thread is None:
                self._step_one(resident)
                if not elsewhere:  # else the other threads' batches are changing as it reads them
                    self._publish()
        if elsewhere:
            for done in elsewhere:
                done.result()
            self.host.add_counts()
            self._publish()

    def _step_one(self, resident) -> None:
        try:
            resident.scheduler.step()
        except Exception as exc:  # a failed step must not kill the engine, nor other models' work
            log.exception("Generation step of %s failed", resident.loaded.spec.id)
            if self.lockstep is not None and not self.lockstep.alive():
                raise _GroupLost(self.group.lost_rank(exc)) from exc
            resident.scheduler.fail_all(to_lmx_error(exc))

    def _handle(self, job: _Job) -> None:
        if job.slot is not None:
            try:
                resident = self.host.resident(job.path)
                if resident.thread is None:
                    resident.scheduler.admit(job.slot)
                else:  # admitted on its thread, where its batch lives
                    resident.scheduler.arriving.append(job.slot)
            except Exception as exc:  # noqa: BLE001 - the request fails, the engine goes on
                job.slot.fail(to_lmx_error(exc))
            return
        if job.run is None:  # a wake-up
            return
        try:
            job.future.set_result(job.run())
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if not job.future.done():
                job.future.set_exception(exc)
