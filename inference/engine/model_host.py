"""The model host: the resident models, each with its batch, prompt caches and scheduler; loads,
warms up and unloads them (engine thread).

Several models may be resident; which ones, and which to unload to make room, is the server's
policy (inference.pool). A load never replaces another model here; a load that fails leaves the
resident models as they were.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, fields

import mlx.core as mx

from inference.engine import disk_cache, loading, model_thread, sharding, warming
from inference.engine.disk_cache import DiskTier
from inference.engine.mlx_compat import quantized_cache
from inference.engine.mlx_compat.generator import LMXBatchGenerator
from inference.engine.model_thread import ModelThread
from inference.engine.scheduler import Scheduler
from inference.engine.warming import Warming
from inference.errors import InvalidRequest, LMXError, NoModelLoaded, OomUnloaded
from inference.heap import freeze_heap, return_free_memory
from inference.store import ModelSpec
from inference.wire import (
    DEFAULT_OPTIONS,
    EngineCounters,
    LoadedInfo,
    LoadOptions,
    LoadResult,
    ModelAction,
    ModelEvent,
    UnloadResult,
)

log = logging.getLogger("lmx.engine")

_ACTIONS = {"evicted": ModelAction.EVICTED, "expired": ModelAction.EXPIRED}


@dataclass(frozen=True)
class LoadedModel(LoadedInfo):
    """A resident model in the engine process: its description and its MLX objects."""

    model: object = None
    tokenizer: object = None

    def info(self) -> LoadedInfo:
        return LoadedInfo(**{f.name: getattr(self, f.name) for f in fields(LoadedInfo)})


class Resident:
    """One resident model: its MLX objects, its continuous batch and prompt caches, and the
    scheduler of its requests (a step of one model never holds another's rows)."""

    def __init__(
        self,
        loaded: LoadedModel,
        generator: LMXBatchGenerator | None,
        counters,
        max_concurrent: int,
        thread: ModelThread | None = None,
    ):
        self.loaded = loaded
        self.generator = generator
        # The model's own thread (engine.model_thread), where its batch lives; None: the engine's.
        # Its scheduler counts into its own totals, added to the engine's after each step.
        self.thread = thread
        self.counters = EngineCounters() if thread is not None else counters
        self.scheduler = Scheduler(self, self.counters, max_concurrent=max_concurrent)
        # llguidance's tokenizer, made in the background: made on the engine thread at the first
        # structured request it stalled every stream ~1 s.
        self._grammar_tokenizer = _make_grammar_tokenizer(loaded)

    def grammar_tokenizer(self):
        return self._grammar_tokenizer.result()

    def on_thread(self, fn):
        """`fn()` where this model's batch lives."""
        return fn() if self.thread is None else self.thread.call(fn)

    def fail_all(self, error: LMXError) -> None:
        self.on_thread(lambda: self.scheduler.fail_all(error))

    def close(self) -> None:
        if self.generator is not None:
            self.on_thread(self.generator.close)
        if self.thread is not None:
            self.thread.stop()


def _make_grammar_tokenizer(loaded: LoadedModel) -> Future:
    from inference.engine.grammar import tokenizer_for

    made: Future = Future()
    tokenizer, vocab_size = loaded.tokenizer, loaded.vocab_size  # not the model: an unload frees it

    def make():
        try:
            made.set_result(tokenizer_for(tokenizer, vocab_size))
        except BaseException as exc:  # noqa: BLE001 - the first structured request hears it
            made.set_exception(exc)

    threading.Thread(target=make, name="lmx-grammar-tokenizer", daemon=True).start()
    return made


class ModelHost:
    def __init__(
        self,
        *,
        max_concurrent: int,
        prompt_cache_size: int,
        prompt_cache_bytes: int,
        disk: DiskTier | None = None,
        counters: EngineCounters,
        announce: Callable[[ModelEvent], None],
        state_changed: Callable[[], None],
        group=None,
    ):
        self.group = group  # a distributed group (engine.distributed.Group): models are split over it
        self.max_concurrent = max_concurrent
        self.prompt_cache_size = prompt_cache_size
        self.prompt_cache_bytes = prompt_cache_bytes
        self.disk = disk  # the prompt caches' disk tier, shared by the models
        self.counters = counters
        self._announce = announce
        self._state_changed = state_changed
        # Read without locks from other threads (probes, the process's receiver): replaced, never
        # changed in place.
        self.residents: dict[str, Resident] = {}  # by path, in load order
        self.loading: str | None = None
        self.oom_unloaded: frozenset[str] = frozenset()  # paths the guardian unloaded, until loaded again
        self.warming = Warming()  # warm-up pieces left, run while the engine is idle

    @property
    def loaded(self) -> LoadedModel | None:
        """The most recently loaded resident model."""
        residents = list(self.residents.values())
        return residents[-1].loaded if residents else None

    def _blocks(self, spec: ModelSpec, backend: str, options: LoadOptions):
        if self.disk is None:
            return None
        identity = disk_cache.model_identity(spec, backend=backend, kv_bits=options.kv_bits)
        return self.disk.for_model(identity, spec.id)

    def kv_cache_bytes(self) -> tuple[tuple[str, int], ...]:
        """(path, bytes of keys and values held) of each model that decodes."""
        return tuple(
            (path, r.generator.kv_cache_nbytes)
            for path, r in self.residents.items()
            if r.generator is not None
        )

    @property
    def busy(self) -> bool:
        return any(r.scheduler.busy for r in self.residents.values())

    def resident(self, path: str, loaded_at: float | None = None) -> Resident:
        """The resident model at `path`, if it is still there (and, given `loaded_at`, the same
        load) a request was checked against in the server process; any thread."""
        resident = self.residents.get(path)
        if resident is None or loaded_at not in (None, resident.loaded.loaded_at):
            raise self.refusal(path)
        return resident

    def model_for(self, path: str, loaded_at: float | None = None) -> LoadedModel:
        return self.resident(path, loaded_at).loaded

    def refusal(self, path: str) -> LMXError:
        """Why a request for the model at `path` cannot run now."""
        if path in self.oom_unloaded:
            return OomUnloaded()
        return NoModelLoaded("The model was unloaded or replaced before the request ran. Retry.")

    def _split(self, spec: ModelSpec, used: list):
        """Sharding of `spec` over the group, for loading.load; None on one process."""
        if self.group is None:
            return None

        def split(model, config: dict) -> str:
            used.append(
                sharding.shard(model, config, self.group.group, mode=self.group.sharding, name=spec.id)
            )
            return used[-1]

        return split

    def load(
        self, spec: ModelSpec, options: LoadOptions = DEFAULT_OPTIONS, loaded_at: float | None = None
    ) -> LoadResult:
        resident = self.residents.get(spec.path)
        if resident is not None:
            loaded = resident.loaded
            return LoadResult(spec.id, loaded.load_time_ms, loaded.vram_gb, already_loaded=True)
        self.loading = spec.id
        self._state_changed()
        thread = None
        try:
            before = mx.get_active_memory()
            start = time.perf_counter()
            split: list[str] = []
            model, tokenizer, config, backend = loading.load(spec, self._split(spec, split))
            own_context = loading.context_length(config)
            if options.context_length is not None and options.context_length > own_context:
                raise InvalidRequest(
                    f"context_length={options.context_length} exceeds {spec.id}'s own context length "
                    f"of {own_context}."
                )
            if options.kv_bits is not None and (why := quantized_cache.refusal(model, options.kv_bits)):
                raise InvalidRequest(f"{spec.id}: {why}")
            vram = max(mx.get_active_memory() - before, loading.parameter_bytes(model))
            self._warm_up(spec, model)
            later = loading.later_warm_ups(model)
            if later and (self.group is not None or not loading.warm_up_in_background()):
                warming.run_now(spec.id, later)
                later = []
            elapsed_ms = int((time.perf_counter() - start) * 1000)  # until it is ready to serve
            loaded = LoadedModel(
                spec=spec,
                model=model,
                tokenizer=tokenizer,
                config=config,
                vram_bytes=vram,
                load_time_ms=elapsed_ms,
                loaded_at=loaded_at or time.time(),
                context_length=options.context_length or own_context,
                backend=backend,
                vocab_size=config.get("vocab_size") or len(tokenizer.get_vocab()),
                max_token_bytes=loading.max_token_bytes(tokenizer),
                options=options,
                model_context_length=own_context,
                sharding=split[0] if split else None,
            )
            generator, thread = None, None  # embedding models and rerankers: no batch to decode in
            if spec.kind == "chat":
                thread = self._own_thread(spec)
                disk = self._blocks(spec, backend, options)

                def make_generator():
                    return LMXBatchGenerator(
                        model,
                        max_concurrent=self.max_concurrent,
                        cache_size=self.prompt_cache_size,
                        cache_bytes=options.prompt_cache_bytes or self.prompt_cache_bytes,
                        kv_bits=options.kv_bits,
                        disk=disk,
                        fixed_pacing=self.group is not None,
                    )

                generator = make_generator() if thread is None else thread.call(make_generator)
            self.residents = {
                **self.residents,
                spec.path: Resident(loaded, generator, self.counters, self.max_concurrent, thread),
            }
            self.oom_unloaded = self.oom_unloaded - {spec.path}
            self.warming.add(spec.path, spec.id, later)
            freeze_heap()
        except BaseException:
            model = tokenizer = None
            if thread is not None:
                thread.stop()
            self._release()
            raise
        finally:
            self.loading = None
            self._state_changed()
        log.info("Model loaded: %s (%.1f GB, %.1fs)", spec.id, vram / 1e9, elapsed_ms / 1000)
        self._announce(ModelEvent(ModelAction.LOADED, spec.id, loaded.vram_gb, elapsed_ms))
        return LoadResult(spec.id, elapsed_ms, loaded.vram_gb)

    def _own_thread(self, spec: ModelSpec) -> ModelThread | None:
        """A thread of its own for a model that generates beside another (engine.model_thread);
        never in a distributed group, whose ranks step together on their engine threads."""
        beside = any(r.generator is not None for r in self.residents.values())
        if not beside or self.group is not None or not model_thread.enabled():
            return None
        log.info("%s steps on its own thread, beside the resident models (LMX_MODEL_THREADS)", spec.id)
        return ModelThread(f"lmx-model-{spec.id}")

    def add_counts(self) -> None:
        """Each model thread's counts since the last call, into the engine's (its threads idle)."""
        for resident in self.residents.values():
            if resident.thread is not None:
                self.counters.take(resident.counters)

    @staticmethod
    def _warm_up(spec: ModelSpec, model) -> None:
        try:
            loading.warm_up(model)
        except Exception as exc:  # noqa: BLE001 - the first request will say what is wrong, if anything
            log.warning("Warm-up of %s failed: %s", spec.id, exc)

    def unload(self, path: str | None = None, reason: str = "request") -> UnloadResult:
        """Unload the model at `path`, or every resident model; their requests end first."""
        paths = list(self.residents) if path is None else [path] if path in self.residents else []
        if not paths:
            return UnloadResult(None, 0.0)
        before = mx.get_active_memory()
        ids = []
        for one in paths:
            resident = self.residents[one]
            model_id = resident.loaded.spec.id
            resident.fail_all(
                OomUnloaded()
                if reason == "oom"
                else NoModelLoaded(
                    f"The model {model_id} was unloaded ({reason}) while this request ran. Load it and retry."
                )
            )
            self.add_counts()
            resident.close()
            self.warming.drop(one)
            self.residents = {p: r for p, r in self.residents.items() if p != one}
            del resident
            ids.append((model_id, one))
        self._release()
        freed = round(max(0, before - mx.get_active_memory()) / 1e9, 3)
        if reason == "oom":
            self.oom_unloaded = self.oom_unloaded | {p for _, p in ids}
        self._state_changed()
        share = round(freed / len(ids), 3)  # what each freed is not told apart: an even share
        for model_id, _ in ids:
            log.info("Model unloaded, freed %.1f GB (%s, %s)", share, model_id, reason)
            self._announce(
                ModelEvent(_ACTIONS.get(reason, ModelAction.UNLOADED), model_id, share, reason=reason)
            )
        return UnloadResult(ids[0][0], freed, tuple(i for i, _ in ids))

    def drop_prompt_caches(self) -> int:
        """Empty every resident model's prompt caches, the largest first; the bytes they held."""
        freed = 0
        batched = [r for r in self.residents.values() if r.generator is not None]
        for resident in sorted(batched, key=lambda r: -r.generator.prompt_caches.nbytes):
            freed += resident.generator.prompt_caches.nbytes
            resident.generator.prompt_caches.trim_to(n_sequences=0)
        mx.clear_cache()
        return_free_memory()
        return freed

    def fail_all(self, error: LMXError) -> None:
        """End every request of every resident model with `error`."""
        for resident in self.residents.values():
            resident.fail_all(error)
        self.add_counts()

    def drop(self) -> None:
        """Let go of every model and its batch, whatever state they are in (shutdown)."""
        residents, self.residents = self.residents, {}
        self.warming.drop()
        while residents:  # no name left holding one when the collector runs
            residents.popitem()[1].close()
        self._release()

    @staticmethod
    def _release() -> None:
        gc.unfreeze()  # the model's objects were frozen with the rest: let them go
        freeze_heap()
        mx.clear_cache()
        return_free_memory()
