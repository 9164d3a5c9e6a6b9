"""One generation request as the engine sees it, and its way back to the asyncio side.

The engine thread calls `Slot.add_token` etc.; the slot turns them into wire events. In the
engine process the events leave by pipe (engine.process.PipeSlot); driven in one process
(inference.client.inprocess, tests), the handler reads `Slot.events()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from inference.delivery import hand_out, read_events
from inference.engine.markers import partial_suffix
from inference.engine.reasoning import ReasoningSplitter, splitter_for
from inference.engine.tool_calls import ToolCallExtractor
from inference.errors import LMXError
from inference.wire import (
    Closed,
    Done,
    Event,
    Failed,
    FinishReason,
    GenerationRequest,
    Logprobs,
    Reasoning,
    Started,
    Stats,
    Text,
    TokenLogprob,
    ToolCalls,
)


class StopFilter:
    """Holds back text that may be the start of a stop string, so a stop string never leaks,
    also when it arrives split across tokens."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.hit: str | None = None  # the stop string found

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [(self.pending.find(s), s) for s in self.stops if s in self.pending]
        if hits:
            index, self.hit = min(hits)
            out, self.pending = self.pending[:index], ""
            return out, True
        keep = max(partial_suffix(self.pending, s) for s in self.stops)
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(out) :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class Slot:
    """A request's place in the batch; its events are inference.wire's Started, Text, then Done
    or Failed."""

    def __init__(
        self,
        request: GenerationRequest,
        *,
        detokenizer,
        eos_token_ids,
        loop: asyncio.AbstractEventLoop | None = None,
        tool_calls: ToolCallExtractor | None = None,
        reasoning: ReasoningSplitter | None = None,
        token_text: Callable[[int], str] | None = None,
    ):
        self.request = request
        self.token_text = token_text  # one token's text, for log-probabilities
        self.reasoning = reasoning  # a thinking model's chat: its reasoning out of the answer
        self.tool_calls = tool_calls  # when the request offers tools: calls out of the text
        self.detokenizer = detokenizer
        self.eos_token_ids = set(eos_token_ids)
        self.loop = loop or _running_loop()  # None in the engine process: events leave by pipe
        self.queue: asyncio.Queue = asyncio.Queue()
        self.stop_filter = StopFilter(request.stop)
        self.cancelled = False
        self.cached_tokens = 0
        self.prompt_cache: dict | None = None  # what the prompt cache did (scheduler._report)
        self.generated = 0
        self.created = time.perf_counter()
        self.first_token_at: float | None = None
        self.deadline = (time.monotonic() + request.timeout_s) if request.timeout_s else None
        self.on_release: Callable[[], None] | None = None
        self.wake_engine: Callable[[], None] | None = None
        self.outbox: Outbox | None = None  # set by the engine: events leave once per step
        self._released = False

    # --- engine side ---------------------------------------------------------------------
    def _push(self, item: Event) -> None:
        if self.outbox is not None:
            self.outbox.put(self, item)
        else:
            Outbox.send(self.loop, [(self, [item])])

    def _release(self) -> None:
        if not self._released:
            self._released = True
            if self.on_release:
                self.on_release()

    def started(self, cached_tokens: int) -> None:
        self.cached_tokens = cached_tokens
        self._push(Started(cached_tokens=cached_tokens, prompt_tokens=len(self.request.prompt_tokens)))

    def prompt_progress(self, done: int, total: int) -> None:
        pass  # prompt progress is not reported to clients yet

    def add_token(self, token: int, finish_reason: str | None, logprobs=None) -> bool:
        """Returns True when a stop string ended the request (the batch must drop it).
        `logprobs`: the distribution the token was sampled from (for a request that asks)."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        is_eos = finish_reason == "stop" and token in self.eos_token_ids
        if not is_eos:
            self.generated += 1
            self.detokenizer.add_token(token)
            if self.request.logprobs is not None and logprobs is not None and self.token_text is not None:
                self._push(
                    Logprobs((token_logprob(logprobs, token, self.request.logprobs, self.token_text),))
                )
        if finish_reason is not None:
            self.detokenizer.finalize()
        text, hit = self.stop_filter.feed(self.detokenizer.last_segment)
        ending = hit or finish_reason is not None
        if finish_reason is not None and not hit:
            text += self.stop_filter.flush()
        calls, thought = [], ""
        if self.reasoning is not None:
            text, thought = self.reasoning.feed(text)
            if ending:
                rest, more = self.reasoning.finish()
                text, thought = text + rest, thought + more
        if self.tool_calls is not None:
            text, calls = self.tool_calls.feed(text)
            if ending:
                rest, more = self.tool_calls.finish()
                text, calls = text + rest, calls + more
        if thought:
            self._push(Reasoning(thought))
        if text:
            self._push(Text(text))
        if calls:
            self._push(ToolCalls(tuple(calls)))
        if ending:
            reason = FinishReason.LENGTH if not hit and finish_reason == "length" else FinishReason.STOP
            if reason is FinishReason.STOP and self.tool_calls is not None and self.tool_calls.made:
                reason = FinishReason.TOOL_CALLS
            self._finish(reason, self.stop_filter.hit if hit else None)
            return True
        return False

    def _finish(self, reason: FinishReason, stop_sequence: str | None = None) -> None:
        self._push(Done(reason, self.stats(), stop_sequence))
        self._release()

    def fail(self, error: LMXError) -> None:
        self._push(Failed(error))
        self._release()

    def close(self) -> None:
        """Dropped after a cancel: nobody reads the queue any more."""
        self._release()

    def stats(self) -> Stats:
        now = time.perf_counter()
        ttft = (self.first_token_at - self.created) if self.first_token_at else None
        prompt_computed = len(self.request.prompt_tokens) - self.cached_tokens
        decode_time = (now - self.first_token_at) if self.first_token_at else None
        return Stats(
            prompt_tokens=len(self.request.prompt_tokens),
            completion_tokens=self.generated,
            cached_tokens=self.cached_tokens,
            time_to_first_token_ms=ttft * 1000 if ttft is not None else None,
            prompt_tokens_per_second=(prompt_computed / ttft) if ttft else None,
            tokens_per_second=((self.generated - 1) / decode_time)
            if decode_time and self.generated > 1
            else None,
            total_ms=(now - self.created) * 1000,
            prompt_cache=self.prompt_cache,
        )

    # --- handler side --------------------------------------------------------------------
    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.wake_engine:
                self.wake_engine()

    def events(self) -> AsyncIterator[Event]:
        return read_events(self.queue)


class TaggedSlot(Slot):
    """A Slot whose events leave tagged with the request's id (to a client: by pipe from the
    engine process, or straight to inference.client.inprocess)."""

    def __init__(self, rid: int, registry: dict, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rid = rid
        self._registry = registry

    def close(self) -> None:
        self._push(Closed())  # the client stops counting it
        super().close()

    def _release(self) -> None:
        self._registry.pop(self.rid, None)
        super()._release()


def token_logprob(logprobs, token: int, top: int, token_text) -> TokenLogprob:
    """The sampled token's log-probability and the `top` most likely tokens, read to the host."""
    import mlx.core as mx

    row = logprobs.reshape(-1)
    chosen = row[token].item()
    best = []
    if top:
        ids = mx.argpartition(-row, top - 1)[:top]
        best = sorted(zip(ids.tolist(), row[ids].tolist(), strict=True), key=lambda pair: -pair[1])

    def entry(t: int, value: float):
        text = token_text(t)
        return text, value, tuple(text.encode())

    text = token_text(token)
    return TokenLogprob(text, chosen, tuple(text.encode()), tuple(entry(t, v) for t, v in best))


def tagged_slot(rid: int, registry: dict, request: GenerationRequest, tokenizer) -> TaggedSlot:
    """A request's slot with the loaded model's detokenizer, end tokens and tool-call format."""
    tool_calls = reasoning = None
    if request.tool_format is not None:
        tool_calls = ToolCallExtractor(request.tool_format, tokenizer, request.tools)
    if request.split_reasoning:
        reasoning = splitter_for(tokenizer, request.prompt_tokens)
    return TaggedSlot(
        rid,
        registry,
        request,
        detokenizer=tokenizer.detokenizer,
        eos_token_ids=tokenizer.eos_token_ids,
        tool_calls=tool_calls,
        reasoning=reasoning,
        token_text=lambda token: tokenizer.decode([token]),
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Outbox:
    """The events of one engine step, handed to each event loop in one callback.

    One wake-up per step rather than one per token: each `call_soon_threadsafe` writes to the
    loop's self-pipe, a system call that lets the GIL go, and getting it back behind the busy
    engine thread costs up to the interpreter's switch interval. Used by the engine thread only.
    """

    def __init__(self):
        self._items: list[tuple[Slot, Event]] = []

    def put(self, slot: Slot, item: Event) -> None:
        self._items.append((slot, item))

    def flush(self) -> None:
        if not self._items:
            return
        items, self._items = self._items, []
        by_loop: dict[asyncio.AbstractEventLoop, dict[Slot, list[Event]]] = {}
        for slot, item in items:
            by_loop.setdefault(slot.loop, {}).setdefault(slot, []).append(item)
        for loop, per_slot in by_loop.items():
            self.send(loop, list(per_slot.items()))

    @staticmethod
    def send(loop: asyncio.AbstractEventLoop, turns: list[tuple[Slot, list[Event]]]) -> None:
        try:
            loop.call_soon_threadsafe(hand_out, turns, loop)
        except RuntimeError:  # the handlers' loop is gone: nobody is listening
            for slot, _ in turns:
                slot.cancelled = True
