"""The model host: loads, warms up, restores and unloads the one resident model (engine thread).

A load replaces the resident model; a load that fails loads the previous one again, so a broken
file never leaves the server without the model it had.
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

from inference.engine import loading
from inference.engine.mlx_compat.generator import LMXBatchGenerator
from inference.errors import LMXError, NoModelLoaded, OomUnloaded
from inference.heap import freeze_heap
from inference.store import ModelSpec
from inference.wire import LoadedInfo, LoadResult, ModelAction, ModelEvent, UnloadResult

log = logging.getLogger("lmx.engine")


@dataclass(frozen=True)
class LoadedModel(LoadedInfo):
    """The loaded model in the engine process: its description and its MLX objects."""

    model: object
    tokenizer: object

    def info(self) -> LoadedInfo:
        return LoadedInfo(**{f.name: getattr(self, f.name) for f in fields(LoadedInfo)})


class ModelHost:
    def __init__(
        self,
        *,
        max_concurrent: int,
        prompt_cache_size: int,
        prompt_cache_bytes: int,
        announce: Callable[[ModelEvent], None],
        state_changed: Callable[[], None],
        end_requests: Callable[[LMXError], None],
    ):
        self.max_concurrent = max_concurrent
        self.prompt_cache_size = prompt_cache_size
        self.prompt_cache_bytes = prompt_cache_bytes
        self._announce = announce
        self._state_changed = state_changed
        self._end_requests = end_requests  # every request in flight, before the model goes
        # Read without locks from other threads (probes, the process's receiver).
        self.loaded: LoadedModel | None = None
        self.loading: str | None = None
        self.oom_unloaded = False
        self.generator: LMXBatchGenerator | None = None  # the loaded model's batch and prompt caches
        # llguidance's tokenizer for the loaded model, made in the background after each load: made
        # on the engine thread at the first structured request it stalled every stream ~1 s.
        self._grammar_tokenizer: Future | None = None

    def model_for(self, path: str, loaded_at: float | None = None) -> LoadedModel:
        """The loaded model, if it is still the one at `path` (and, given `loaded_at`, the same
        load) a request was checked against in the server process; any thread."""
        loaded = self.loaded
        if loaded is None and self.oom_unloaded:
            raise OomUnloaded()
        if loaded is None or loaded.spec.path != path or loaded_at not in (None, loaded.loaded_at):
            raise NoModelLoaded("The model was unloaded or replaced before the request ran. Retry.")
        return loaded

    def grammar_tokenizer(self):
        """The loaded model's tokenizer as llguidance needs it (made once per load)."""
        if self._grammar_tokenizer is None:
            self._grammar_tokenizer = self._make_grammar_tokenizer(self.loaded)
        return self._grammar_tokenizer.result()

    @staticmethod
    def _make_grammar_tokenizer(loaded: LoadedModel) -> Future:
        from inference.engine.grammar import tokenizer_for

        made: Future = Future()

        def make():
            try:
                made.set_result(tokenizer_for(loaded.tokenizer, loaded.vocab_size))
            except BaseException as exc:  # noqa: BLE001 - the first structured request hears it
                made.set_exception(exc)

        threading.Thread(target=make, name="lmx-grammar-tokenizer", daemon=True).start()
        return made

    def refusal(self) -> LMXError:
        """Why a request cannot run now that no model is loaded."""
        return OomUnloaded() if self.oom_unloaded else NoModelLoaded()

    def load(self, spec: ModelSpec) -> LoadResult:
        if self.loaded is not None and self.loaded.spec.path == spec.path:
            return LoadResult(spec.id, self.loaded.load_time_ms, self.loaded.vram_gb, already_loaded=True)
        previous = replaced = None
        if self.loaded is not None:
            previous = self.loaded.spec
            replaced = self.unload("replaced")
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
            self.generator = LMXBatchGenerator(
                model,
                max_concurrent=self.max_concurrent,
                cache_size=self.prompt_cache_size,
                cache_bytes=self.prompt_cache_bytes,
            )
            self._grammar_tokenizer = self._make_grammar_tokenizer(self.loaded)
            freeze_heap()
        except BaseException as exc:
            self.drop()
            if previous is not None and isinstance(exc, Exception):
                self._restore(previous, failed=spec.id)
            raise
        finally:
            self.loading = None
            self._state_changed()
        log.info("Model loaded: %s (%.1f GB, %.1fs)", spec.id, vram / 1e9, elapsed_ms / 1000)
        self._announce(ModelEvent(ModelAction.LOADED, spec.id, self.loaded.vram_gb, elapsed_ms))
        unloaded = (
            None if replaced is None else {"model": replaced.model, "freed_vram_gb": replaced.freed_vram_gb}
        )
        return LoadResult(spec.id, elapsed_ms, self.loaded.vram_gb, unloaded=unloaded)

    @staticmethod
    def _warm_up(spec: ModelSpec, model) -> None:
        try:
            loading.warm_up(model)
        except Exception as exc:  # noqa: BLE001 - the first request will say what is wrong, if anything
            log.warning("Warm-up of %s failed: %s", spec.id, exc)

    def _restore(self, spec: ModelSpec, *, failed: str) -> None:
        log.warning("Loading %s failed; loading %s again", failed, spec.id)
        try:
            self.load(spec)
        except Exception:
            log.exception("Could not load %s again", spec.id)

    def unload(self, reason: str = "request") -> UnloadResult:
        if self.loaded is None:
            return UnloadResult(None, 0.0)
        model_id = self.loaded.spec.id
        self._end_requests(
            OomUnloaded()
            if reason == "oom"
            else NoModelLoaded(
                f"The model {model_id} was unloaded while this request ran. Load a model and retry."
            )
        )
        before = mx.get_active_memory()
        self.drop()
        freed = round(max(0, before - mx.get_active_memory()) / 1e9, 3)
        self.oom_unloaded = reason == "oom"
        self._state_changed()
        log.info("Model unloaded, freed %.1f GB", freed)
        self._announce(ModelEvent(ModelAction.UNLOADED, model_id, freed, reason=reason))
        return UnloadResult(model_id, freed)

    def drop(self) -> None:
        """Let go of the model and its batch, whatever state they are in."""
        if self.generator is not None:
            self.generator.close()
        self.loaded = None
        self.generator = None
        self._grammar_tokenizer = None
        gc.unfreeze()  # the model's objects were frozen with the rest: let them go
        freeze_heap()
        mx.clear_cache()
