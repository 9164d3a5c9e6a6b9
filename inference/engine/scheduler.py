"""The scheduler of one resident model: which of its requests run, wait or decode alone, and one
step of them (engine thread). Each resident model has its own; the engine steps them in turn.

A request that arrives while nothing else runs is decoded alone (engine.solo); a second one moves
it into the continuous batch (mlx-lm's BatchGenerator, through mlx_compat.generator) token for
token. Up to `max_concurrent` requests share the batch; the rest wait in arrival order. A request
leaves as soon as it finishes, is cancelled or times out, checked in one place (`_reap`) before
every step, so a disconnect costs at most the step already running.
"""

from __future__ import annotations

import time

from mlx_lm.generate import StopSequences

from inference.engine import cache_report, sampling
from inference.engine.mlx_compat import batch_layers
from inference.engine.slot import Slot
from inference.engine.solo import Solo
from inference.errors import InvalidRequest, LMXError, LmxTimeout, to_lmx_error
from inference.wire import EngineCounters


class Scheduler:
    def __init__(self, model, counters: EngineCounters, *, max_concurrent: int):
        self.model = model  # the resident model (engine.model_host.Resident) whose batch this runs
        self.counters = counters
        self.max_concurrent = max_concurrent
        self.running: dict[int, Slot] = {}  # by the batch's uid
        self.waiting: list[Slot] = []
        self.solo: Solo | None = None
        # Handed over by the engine thread for a model on its own thread: admitted there, at the
        # start of its next step (engine.model_thread).
        self.arriving: list[Slot] = []

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting or self.solo or self.arriving)

    # --- admission -------------------------------------------------------------------------
    def admit(self, slot: Slot) -> None:
        loaded = self.model.loaded
        if self.model.generator is None:  # the server refuses these first; a stray one hears why
            slot.fail(
                InvalidRequest(f"{loaded.spec.id} is a {loaded.spec.kind} model: it does not generate.")
            )
            return
        if slot.cancelled:
            slot.close()
            return
        try:  # a grammar the engine cannot follow fails its own request, nothing else
            processors = sampling.processors(slot.request, grammar_tokenizer=self.model.grammar_tokenizer)
        except Exception as exc:  # noqa: BLE001 - the request hears why
            slot.fail(to_lmx_error(exc))
            return
        alone = not (self.running or self.waiting or self.solo)
        if not alone:
            if self.solo is not None:
                self._solo_to_batch()
            if len(self.running) >= self.max_concurrent:
                self.waiting.append(slot)  # looked up when it is admitted from there
                return
        tokens = list(slot.request.prompt_tokens)
        found = self.model.generator.lookup(loaded.spec.id, tokens)
        slot.prompt_cache = cache_report.report(found, tokens, loaded.tokenizer.decode)
        if alone:
            self.solo = Solo(
                loaded,
                slot,
                (found.cache, found.rest),
                sampler=sampling.sampler(slot.request),
                processors=processors,
                stop_tokens=set(sampling.stop_tokens(loaded.tokenizer, slot.request)),
            )
            self._count_prompt(slot)
            return
        uid = self._insert(
            slot,
            prompt=found.rest,
            cache=found.cache,
            in_cache=tokens[: found.cached],
            max_tokens=slot.request.max_tokens,
            sampler=sampling.sampler(slot.request),
            processors=processors,
        )
        slot.started(found.cached)
        self._count_prompt(slot)
        self.running[uid] = slot

    def _insert(self, slot: Slot, *, prompt, cache, in_cache, max_tokens, sampler, processors) -> int:
        stops = [(t,) for t in sampling.stop_tokens(self.model.loaded.tokenizer, slot.request)]
        (uid,) = self.model.generator.insert(
            [prompt],
            max_tokens=[max_tokens],
            caches=[cache] if cache is not None else None,
            all_tokens=[list(in_cache)],
            samplers=[sampler],
            logits_processors=[processors],
            stop_sequences=[StopSequences(stops)],
        )
        return uid

    def _count_prompt(self, slot: Slot) -> None:
        self.counters.prompt_tokens += len(slot.request.prompt_tokens)
        self.counters.cached_tokens += slot.cached_tokens

    def _solo_to_batch(self) -> None:
        """A second request came: the one decoded alone joins the batch, token for token: its
        cache, and its pending token (sent now, not yet in the cache) as the prompt."""
        solo, self.solo = self.solo, None
        try:
            self._move_into_batch(solo)
        except Exception as exc:  # it is out of the solo seat: it must hear why, not hang
            solo.slot.fail(to_lmx_error(exc))
            raise

    def _move_into_batch(self, solo: Solo) -> None:
        if self._reap(solo.slot):
            return
        token, finish = solo.handoff()
        if self._deliver(solo.slot, token, finish, solo.last_logprobs):
            self._remember(solo.tokens, solo.cache)
            return
        uid = self._insert(
            solo.slot,
            prompt=[token],
            cache=solo.cache,
            in_cache=solo.tokens,
            max_tokens=solo.remaining,
            sampler=solo.sampler,
            processors=solo.processors,
        )
        self.running[uid] = solo.slot

    # --- leaving ---------------------------------------------------------------------------
    def _reap(self, slot: Slot, *, queued: bool = False) -> bool:
        """Whether `slot` must leave before the next step (cancelled or past its deadline); if so
        it is closed or failed here."""
        if slot.cancelled:
            slot.close()
            return True
        if slot.deadline is not None and time.monotonic() > slot.deadline:
            slot.fail(
                LmxTimeout("The request timed out while queued. Retry later.") if queued else _timed_out(slot)
            )
            return True
        return False

    def fail_all(self, error: LMXError) -> None:
        for slot in self.arriving:
            slot.fail(error)
        self.arriving.clear()
        if self.solo is not None:
            self.solo.slot.fail(error)
            self.solo = None
        for slot in [*self.running.values(), *self.waiting]:
            slot.fail(error)
        if self.running:
            self.model.generator.remove(list(self.running))
        self.running.clear()
        self.waiting.clear()

    def _deliver(self, slot: Slot, token: int, finish: str | None, logprobs=None) -> bool:
        """Send a token (with the log-probabilities it was sampled from); True when the request is over."""
        self.counters.generated_tokens += 1
        done = slot.add_token(token, finish, logprobs)
        if finish is not None or done:
            self.counters.completed += 1
            return True
        return False

    def _remember(self, tokens, cache) -> None:
        self.model.generator.remember(self.model.loaded.spec.id, tokens, cache)

    # --- a step ----------------------------------------------------------------------------
    def step(self) -> None:
        while self.arriving:
            self.admit(self.arriving.pop(0))
        if self.solo is not None:
            self._solo_step()
            return
        reaped = [uid for uid, slot in self.running.items() if self._reap(slot)]
        self.waiting = [slot for slot in self.waiting if not self._reap(slot, queued=True)]
        if reaped:
            self.model.generator.remove(reaped)
            for uid in reaped:
                del self.running[uid]
        while self.waiting and len(self.running) < self.max_concurrent:
            self.admit(self.waiting.pop(0))
        if self.running:
            self._batch_step()

    def _solo_step(self) -> None:
        solo = self.solo
        if self._reap(solo.slot):
            self.solo = None
            return
        start = time.perf_counter()
        token, finish = solo.step()
        # A prompt arriving now is prefilled beside this stream, paced against its step: without
        # this the pacer would know no decoding step until the prompt was read.
        self.model.generator.pacer.observe(time.perf_counter() - start, decoding=True, prompt_tokens=0)
        self.counters.steps += 1
        if self._deliver(solo.slot, token, finish, solo.last_logprobs):
            self.solo = None
            self._remember(solo.tokens, solo.cache)

    def _batch_step(self) -> None:
        generator = self.model.generator
        batch_layers.use(
            self.model.loaded.model, batched=True
        )  # a request decoded alone may have left them off
        prompt_responses, gen_responses = generator.next()
        self.counters.steps += 1
        for r in prompt_responses:
            slot = self.running.get(r.uid)
            if slot is not None:
                slot.prompt_progress(*r.progress)
        finished = []  # ended by a stop string: still in mlx-lm's batch
        for r in gen_responses:
            slot = self.running.get(r.uid)
            if slot is None or not self._deliver(slot, r.token, r.finish_reason, r.logprobs):
                continue
            if r.finish_reason is not None:  # mlx-lm has already dropped it
                self._remember(r.all_tokens, r.prompt_cache)
                del self.running[r.uid]
            else:
                finished.append(r.uid)
        if finished:
            caches = generator.remove(finished, return_prompt_caches=True)
            for uid in finished:
                cache, tokens = caches.get(uid, (None, None))
                self._remember(tokens, cache)
                del self.running[uid]


def _timed_out(slot: Slot) -> LmxTimeout:
    return LmxTimeout(
        f"The request exceeded LMX_REQUEST_TIMEOUT_S after {slot.generated} tokens. "
        "Reduce context length or max_tokens, or switch to a smaller model."
    )
