"""The engine: the one thread that owns MLX, in the engine process (inference.engine_process).

Request handlers never touch MLX. Their commands reach this thread through a queue and get
answers back through futures (load, unload) or a per-request stream (generation). All
generation runs in one continuous batch (mlx-lm's BatchGenerator): a request joins the batch
at the next step, whatever the others are doing, and leaves it as soon as it finishes, is
cancelled or times out.
"""

from __future__ import annotations

import gc
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, fields

import mlx.core as mx

from inference import admission, batch_layers, loading
from inference.errors import LMXError, LmxTimeout, NoModelLoaded, OomUnloaded, at_capacity, to_lmx_error
from inference.generation import Outbox, Slot
from inference.prompt_cache import remember
from inference.store import ModelSpec

log = logging.getLogger("lmx.engine")

# The engine thread builds each step's graph in Python and holds the GIL meanwhile; a thread that
# needs it back (here: the engine process's receiver and tokenizers) waits up to the switch
# interval, 5 ms by default. When the server's event loop shared this GIL, 0.2 ms took /readyz p90
# from 12 to 2.7-5 ms at the same throughput (H100, 32 streams of Llama-3.1-8B, docs/BENCHMARKS.md).
SWITCH_INTERVAL_S = 0.0002


@dataclass(frozen=True)
class LoadedInfo:
    """What the server process knows of the model the engine process holds (no MLX objects)."""

    spec: ModelSpec
    config: dict
    vram_bytes: int
    load_time_ms: int
    loaded_at: float
    context_length: int
    backend: str
    vocab_size: int  # token ids a request may name are below this

    @property
    def vram_gb(self) -> float:
        return round(self.vram_bytes / 1e9, 3)


@dataclass(frozen=True)
class LoadedModel(LoadedInfo):
    """The loaded model in the engine process: its description and its MLX objects."""

    model: object
    tokenizer: object

    def info(self) -> LoadedInfo:
        return LoadedInfo(**{f.name: getattr(self, f.name) for f in fields(LoadedInfo)})


@dataclass
class LoadResult:
    model: str
    load_time_ms: int
    vram_gb: float
    already_loaded: bool = False
    unloaded: dict | None = None  # what a replaced model freed


@dataclass
class UnloadResult:
    model: str | None
    freed_vram_gb: float


@dataclass
class EngineCounters:
    """Totals read by metrics; written by the engine thread only."""

    generated_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completed: int = 0
    steps: int = 0


@dataclass(frozen=True)
class MemoryFigures:
    """MLX allocator figures, read by the engine thread only: on CUDA an allocator query from
    another thread can wait behind a running step, and whoever asked holds the GIL meanwhile."""

    active: int = 0
    peak: int = 0
    cache: int = 0
    total: int = 0  # device memory; 0 where the backend does not say


@dataclass
class _Command:
    kind: str
    future: Future = field(default_factory=Future)
    spec: ModelSpec | None = None
    slot: Slot | None = None
    reason: str = "request"
    fn: Callable[[], object] | None = None  # for "call": run on the engine thread


class Engine:
    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queue: int,
        prompt_cache_size: int,
        prompt_cache_bytes: int,
        listeners=None,
        outbox=None,
        on_state: Callable[[Engine], None] | None = None,
    ):
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.prompt_cache_size = prompt_cache_size
        self.prompt_cache_bytes = prompt_cache_bytes
        self.counters = EngineCounters()
        # Model lifecycle listeners: callables(event: dict), called from the engine thread.
        self.listeners = list(listeners or [])
        self._commands: queue.Queue[_Command] = queue.Queue()
        self._lock = threading.Lock()
        self._pending_loads: dict[str, Future] = {}
        self._admitted = 0  # requests accepted and not yet finished (queued + running)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmx-engine", daemon=True)
        # State read without locks by probes: plain attribute reads are atomic.
        self.loaded: LoadedModel | None = None
        self.loading: str | None = None
        self.oom_unloaded = False
        self.memory = MemoryFigures()
        self._slots: dict[int, Slot] = {}
        self._waiting: list[Slot] = []
        self._solo = None  # a request decoded alone while nothing else runs (inference.solo)
        self._outbox = outbox or Outbox()
        self.on_state = on_state  # called when loaded, loading or oom_unloaded change
        self._batch = None
        self._prompt_cache = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> Engine:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        freeze_heap()
        self._thread.start()
        return self

    def stop_and_join(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._commands.put(_Command("wake"))
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def active_requests(self) -> int:
        return self._admitted

    @property
    def queued_requests(self) -> int:
        return max(0, self._admitted - self.max_concurrent)

    # --- commands (any thread) -------------------------------------------------------------
    def load(self, spec: ModelSpec) -> Future:
        """Load `spec`, replacing the resident model. A load of a model already being loaded
        shares that load's future instead of loading it twice."""
        with self._lock:
            pending = self._pending_loads.get(spec.id)
            if pending is not None and not pending.done():
                return pending
            cmd = _Command("load", spec=spec)
            self._pending_loads[spec.id] = cmd.future
        self._commands.put(cmd)
        return cmd.future

    def unload(self, reason: str = "request") -> Future:
        cmd = _Command("unload", reason=reason)
        self._commands.put(cmd)
        return cmd.future

    def submit(self, slot: Slot) -> None:
        """Queue a generation; its events arrive on `slot`. Raises when no slot can be had."""
        if self.loaded is None:
            raise OomUnloaded() if self.oom_unloaded else NoModelLoaded()
        with self._lock:
            if self._admitted >= self.max_concurrent + self.max_queue:
                raise at_capacity(self.max_concurrent, self.max_queue)
            self._admitted += 1
        slot.on_release = self._release
        slot.outbox = self._outbox
        self._commands.put(_Command("generate", slot=slot))

    def wake(self) -> None:
        self._commands.put(_Command("wake"))

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    # --- the thread ----------------------------------------------------------------------
    def _read_memory(self) -> None:
        self.memory = MemoryFigures(
            mx.get_active_memory(), mx.get_peak_memory(), mx.get_cache_memory(), self.memory.total
        )

    def _publish(self) -> None:
        """After each command and step: fresh memory figures, then the step's events."""
        self._read_memory()
        self._outbox.flush()

    def _state_changed(self) -> None:
        if self.on_state is not None:
            self.on_state(self)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            # MLX keeps each thread's streams and compiled functions in thread-local storage,
            # whose destructors take the GIL. Left to the thread's exit, they ran after join()
            # had returned and raced the interpreter's finalization: most stops of the engine
            # process ended in an abort ("terminate called without an active exception", -6).
            # MLX asks every thread that used it to clear its streams before it ends.
            mx.clear_streams()

    def _serve(self) -> None:
        self.memory = MemoryFigures(total=loading.device_memory())
        self._publish()
        while not self._stop.is_set():
            busy = bool(self._slots or self._waiting or self._solo)
            try:
                # Idle: sleep until a command comes. Busy: only pick up what is already there.
                cmd = self._commands.get_nowait() if busy else self._commands.get()
            except queue.Empty:
                cmd = None
            while cmd is not None:
                self._handle(cmd)
                self._publish()
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    cmd = None
            if self._stop.is_set():
                break
            if self._slots or self._waiting or self._solo:
                try:
                    self._step()
                except Exception as exc:  # a failed step must not kill the engine
                    log.exception("Generation step failed")
                    self._fail_all(to_lmx_error(exc))
                self._publish()
        self._fail_all(NoModelLoaded("LMX is shutting down."))
        self._publish()
        self._drop_model()

    def _handle(self, cmd: _Command) -> None:
        try:
            if cmd.kind == "load":
                result = self._do_load(cmd.spec)
                cmd.future.set_result(result)
            elif cmd.kind == "unload":
                cmd.future.set_result(self._do_unload(cmd.reason))
            elif cmd.kind == "generate":
                self._admit(cmd.slot)
            elif cmd.kind == "call":
                cmd.future.set_result(cmd.fn())
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if cmd.kind == "generate":
                cmd.slot.fail(to_lmx_error(exc))
            elif not cmd.future.done():
                cmd.future.set_exception(exc)
        finally:
            if cmd.kind == "load":
                with self._lock:
                    if self._pending_loads.get(cmd.spec.id) is cmd.future:
                        del self._pending_loads[cmd.spec.id]

    def model_for(self, path: str, loaded_at: float | None = None) -> LoadedModel:
        """The loaded model, if it is still the one at `path` (and, given `loaded_at`, the same
        load) a request was checked against in the server process; any thread."""
        loaded = self.loaded
        if loaded is None and self.oom_unloaded:
            raise OomUnloaded()
        if loaded is None or loaded.spec.path != path or loaded_at not in (None, loaded.loaded_at):
            raise NoModelLoaded("The model was unloaded or replaced before the request ran. Retry.")
        return loaded

    def run_on_engine(self, fn) -> Future:
        """Run `fn()` on the engine thread, between steps: work on the model outside generation
        (embeddings), and tests and benchmarks that need MLX state."""
        cmd = _Command("call", fn=fn)
        self._commands.put(cmd)
        return cmd.future

    def _do_load(self, spec: ModelSpec) -> LoadResult:
        if self.loaded is not None and self.loaded.spec.path == spec.path:
            return LoadResult(spec.id, self.loaded.load_time_ms, self.loaded.vram_gb, already_loaded=True)
        previous = replaced = None
        if self.loaded is not None:
            previous = self.loaded.spec
            replaced = self._do_unload("replaced")
        self.loading = spec.id
        self._state_changed()
        try:
            before = mx.get_active_memory()
            start = time.perf_counter()
            model, tokenizer, config, backend = loading.load(spec)
            vram = max(mx.get_active_memory() - before, loading.parameter_bytes(model))
            self._warm_up(spec, model)
            elapsed_ms = int((time.perf_counter() - start) * 1000)  # until it is ready to serve
            self.loaded = LoadedModel(
                spec=spec,
                model=model,
                tokenizer=tokenizer,
                config=config,
                vram_bytes=vram,
                load_time_ms=elapsed_ms,
                loaded_at=time.time(),
                context_length=loading.context_length(config),
                backend=backend,
                vocab_size=config.get("vocab_size") or len(tokenizer.get_vocab()),
            )
            self.oom_unloaded = False
            self._batch, self._prompt_cache = loading.make_batch(
                model,
                max_concurrent=self.max_concurrent,
                cache_size=self.prompt_cache_size,
                cache_bytes=self.prompt_cache_bytes,
            )
            freeze_heap()
        except BaseException as exc:
            self._drop_model()
            if previous is not None and isinstance(exc, Exception):
                self._restore(previous, failed=spec.id)
            raise
        finally:
            self.loading = None
            self._state_changed()
        log.info("Model loaded: %s (%.1f GB, %.1fs)", spec.id, vram / 1e9, elapsed_ms / 1000)
        notify(
            self.listeners,
            {
                "type": "model_event",
                "action": "loaded",
                "model": spec.id,
                "vram_gb": self.loaded.vram_gb,
                "load_time_ms": elapsed_ms,
            },
        )
        return LoadResult(
            spec.id,
            elapsed_ms,
            self.loaded.vram_gb,
            unloaded=None
            if replaced is None
            else {"model": replaced.model, "freed_vram_gb": replaced.freed_vram_gb},
        )

    @staticmethod
    def _warm_up(spec: ModelSpec, model) -> None:
        try:
            loading.warm_up(model)
        except Exception as exc:  # noqa: BLE001 - the first request will say what is wrong, if anything
            log.warning("Warm-up of %s failed: %s", spec.id, exc)

    def _restore(self, spec: ModelSpec, *, failed: str) -> None:
        """A failed load should not leave the server without the model it had."""
        log.warning("Loading %s failed; loading %s again", failed, spec.id)
        try:
            self._do_load(spec)
        except Exception:
            log.exception("Could not load %s again", spec.id)

    def _do_unload(self, reason: str) -> UnloadResult:
        if self.loaded is None:
            return UnloadResult(None, 0.0)
        model_id = self.loaded.spec.id
        error = (
            OomUnloaded()
            if reason == "oom"
            else NoModelLoaded(
                f"The model {model_id} was unloaded while this request ran. Load a model and retry."
            )
        )
        self._fail_all(error)
        before = mx.get_active_memory()
        self._drop_model()
        freed = max(0, before - mx.get_active_memory())
        self.oom_unloaded = reason == "oom"
        self._state_changed()
        log.info("Model unloaded, freed %.1f GB", freed / 1e9)
        notify(
            self.listeners,
            {
                "type": "model_event",
                "action": "unloaded",
                "model": model_id,
                "vram_gb": round(freed / 1e9, 3),
                "load_time_ms": None,
                "reason": reason,
            },
        )
        return UnloadResult(model_id, round(freed / 1e9, 3))

    def _drop_model(self) -> None:
        if self._batch is not None:
            self._batch.close()
        self.loaded = None
        self._solo = None
        self._batch = None
        self._prompt_cache = None
        gc.unfreeze()  # the model's objects were frozen with the rest: let them go
        freeze_heap()
        mx.clear_cache()

    # --- generation ------------------------------------------------------------------------
    def _fail_all(self, error: LMXError) -> None:
        if self._solo is not None:
            self._solo.slot.fail(error)
            self._solo = None
        for slot in list(self._slots.values()) + self._waiting:
            slot.fail(error)
        if self._batch is not None and self._slots:
            self._batch.remove(list(self._slots))
        self._slots.clear()
        self._waiting.clear()

    def _admit(self, slot: Slot) -> None:
        if self.loaded is None:
            slot.fail(OomUnloaded() if self.oom_unloaded else NoModelLoaded())
            return
        if slot.cancelled:
            slot.close()
            return
        if self._solo is None and not self._slots and not self._waiting:
            self._solo = loading.start_solo(self.loaded, self._prompt_cache, slot)
            self._count_prompt(slot)
            return
        if self._solo is not None:
            self._solo_to_batch()
        if len(self._slots) >= self.max_concurrent:
            self._waiting.append(slot)
            return
        uid = loading.insert(self._batch, self._prompt_cache, self.loaded, slot)
        self._count_prompt(slot)
        self._slots[uid] = slot

    def _count_prompt(self, slot: Slot) -> None:
        self.counters.prompt_tokens += len(slot.request.prompt_tokens)
        self.counters.cached_tokens += slot.cached_tokens

    def _solo_to_batch(self) -> None:
        """A second request came: the one decoded alone joins the batch, token for token."""
        solo, self._solo = self._solo, None
        if solo.slot.cancelled:
            solo.slot.close()
            return
        token, finish = solo.handoff()
        if self._deliver(solo.slot, token, finish):
            remember(self._prompt_cache, self.loaded, solo.tokens, solo.cache)
            return
        self._slots[loading.resume(self._batch, self.loaded, solo, token)] = solo.slot

    def _deliver(self, slot: Slot, token: int, finish: str | None) -> bool:
        """Send a token; True when the request is over."""
        self.counters.generated_tokens += 1
        done = slot.add_token(token, finish)
        if finish is not None or done:
            self.counters.completed += 1
            return True
        return False

    def _solo_step(self) -> None:
        solo = self._solo
        slot = solo.slot
        if slot.cancelled:
            self._solo = None
            slot.close()
            return
        if slot.deadline is not None and time.monotonic() > slot.deadline:
            self._solo = None
            slot.fail(_timed_out(slot))
            return
        token, finish = solo.step()
        self.counters.steps += 1
        if self._deliver(slot, token, finish):
            self._solo = None
            remember(self._prompt_cache, self.loaded, solo.tokens, solo.cache)

    def _step(self) -> None:
        if self._solo is not None:
            self._solo_step()
            return
        now = time.monotonic()
        # Cancelled, timed-out and finished slots leave before the next step, so a
        # disconnect costs at most the step that was already running.
        removed = []
        for uid, slot in list(self._slots.items()):
            if slot.cancelled:
                removed.append(uid)
                slot.close()
            elif slot.deadline is not None and now > slot.deadline:
                removed.append(uid)
                slot.fail(_timed_out(slot))
        for slot in list(self._waiting):
            if slot.cancelled or (slot.deadline is not None and now > slot.deadline):
                self._waiting.remove(slot)
                if slot.cancelled:
                    slot.close()
                else:
                    slot.fail(LmxTimeout("The request timed out while queued. Retry later."))
        if removed:
            self._batch.remove(removed)
            for uid in removed:
                del self._slots[uid]
        while self._waiting and len(self._slots) < self.max_concurrent:
            self._admit(self._waiting.pop(0))
        if not self._slots:
            return

        batch_layers.use(self.loaded.model, batched=True)  # a request decoded alone may have left them off
        admission.widen(self._batch)
        prompt_responses, gen_responses = self._batch.next()
        self.counters.steps += 1
        for r in prompt_responses:
            slot = self._slots.get(r.uid)
            if slot is not None:
                slot.prompt_progress(*r.progress)
        finished = []  # ended by a stop string: still in mlx-lm's batch
        for r in gen_responses:
            slot = self._slots.get(r.uid)
            if slot is None or not self._deliver(slot, r.token, r.finish_reason):
                continue
            if r.finish_reason is not None:  # mlx-lm has already dropped it
                remember(self._prompt_cache, self.loaded, r.all_tokens, r.prompt_cache)
                del self._slots[r.uid]
            else:
                finished.append(r.uid)
        if finished:
            caches = self._batch.remove(finished, return_prompt_caches=True)
            for uid in finished:
                cache, tokens = caches.get(uid, (None, None))
                if cache is not None:
                    remember(self._prompt_cache, self.loaded, tokens, cache)
                del self._slots[uid]


def notify(listeners, event: dict) -> None:
    """Model lifecycle events to each listener; a failing listener must never break the engine."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("Engine listener failed")


def freeze_heap() -> None:
    """Collect, then move every object left to the permanent generation (each process does it
    for its own heap). Django, Twisted and the model leave ~150k long-lived objects, and a full
    collection walks them all holding the GIL: ~100 ms on a 2-core CPU, a pause every stream
    and probe feels. Frozen, they are skipped (the slowest full collections 79-95 ms -> 3-7 ms
    there, docs/BENCHMARKS.md)."""
    gc.collect()
    gc.freeze()


def _timed_out(slot: Slot) -> LmxTimeout:
    return LmxTimeout(
        f"The request exceeded LMX_REQUEST_TIMEOUT_S after {slot.generated} tokens. "
        "Reduce context length or max_tokens, or switch to a smaller model."
    )
