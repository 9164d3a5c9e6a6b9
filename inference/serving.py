"""Serving logic shared by the HTTP and WebSocket inference endpoints.

`start_generation` validates the request against the loaded model, builds the prompt with the
model's chat template, and puts it into the engine's batch. The caller reads the slot's events.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from inference import aliases, conf, memory, pool, resolve, services, signals, store_index
from inference.errors import InvalidRequest, ModelNotFound, NoModelLoaded, OomUnloaded
from inference.prompt_bounds import refuse_too_long
from inference.requests import ChatRequest, CompletionRequest, SamplingParams
from inference.runtime import get_engine
from inference.wire import Failed, GenerationRequest, Stats, TokenizeKind

log = logging.getLogger("lmx.serving")
DEFAULT_MAX_TOKENS = 4096


async def ensure_model(name: str, *, keep_alive: float | None = None):
    """The resident model `name` means; a model on disk is loaded first (JIT, unless
    LMX_JIT_LOAD is off); else the SPEC's error. `keep_alive` (seconds, -1 forever) rules how
    long the model stays once this request ends."""
    refused = memory.refusal()  # memory is critical: the guardian takes no new work
    if refused is not None:
        raise refused
    engine = get_engine()
    loaded = pool.resident_named(name)
    if loaded is None:
        name = aliases.resolve(name)
        specs = await asyncio.to_thread(store_index.index.models)
        spec = resolve.find(name, specs)
        if spec is None and not name.lower().endswith(".gguf"):
            spec = resolve.find(f"{name}.gguf", specs)
        resident = ", ".join(f"'{m.spec.id}'" for m in engine.models)
        if spec is None:
            raise ModelNotFound(
                f"Model '{name}' is not available. "
                + (f"Resident: {resident}. " if resident else "")
                + "See GET /v1/models."
            )
        if spec.path in engine.oom_unloaded:
            raise OomUnloaded()
        if pool.crashed_before(spec):
            raise InvalidRequest(
                f"Model '{spec.id}' crashed the engine process when it was last loaded, so requests do "
                "not load it on their own. Load it with POST /admin/models/load to try again."
            )
        if not conf.get("LMX_JIT_LOAD"):
            raise NoModelLoaded(
                f"Model '{spec.id}' is on disk but not loaded"
                + (f" (resident: {resident})" if resident else "")
                + ". Load it with POST /admin/models/load, or turn LMX_JIT_LOAD on."
            )
        await services.model_load(ref=spec.id)
        loaded = engine.resident(spec.path)
        if loaded is None:
            raise NoModelLoaded(f"Model '{spec.id}' was unloaded before this request ran. Retry.")
    pool.request_started(path=loaded.spec.path, keep_alive_s=keep_alive)
    return loaded


def _request(
    tokens: list[int], params: SamplingParams, context: int, grammar: str | None
) -> GenerationRequest:
    room = context - len(tokens)
    if room <= 0:
        raise InvalidRequest(
            f"The prompt is {len(tokens)} tokens, {len(tokens) - context + 1} over the model's context "
            f"length of {context} (one token must stay free for the answer). Shorten it."
        )
    if params.max_tokens is not None and params.max_tokens > context:
        raise InvalidRequest(
            f"max_tokens={params.max_tokens} exceeds the model's context length of {context}."
        )
    max_tokens = min(params.max_tokens or DEFAULT_MAX_TOKENS, room)
    return GenerationRequest(
        prompt_tokens=tokens,
        max_tokens=max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k,
        seed=params.seed,
        stop=params.stop,
        presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty,
        logit_bias=params.logit_bias,
        timeout_s=conf.get("LMX_REQUEST_TIMEOUT_S"),
        ignore_eos=params.ignore_eos,
        grammar=grammar,
        logprobs=params.logprobs,
    )


async def start_generation(req: ChatRequest):
    """(stream, loaded model) for a validated chat request; the engine has the request."""
    streams, loaded = await start_generations(req)
    return streams[0], loaded


async def start_generations(req: ChatRequest | CompletionRequest):
    """(streams, loaded model): one stream per prompt (a chat has one; completions may have
    several, each a choice), all in the engine's batch."""
    loaded = await ensure_model(req.model, keep_alive=req.keep_alive)
    if loaded.spec.kind != "chat":
        where = "/v1/embeddings" if loaded.spec.kind == "embedding" else "/v1/rerank"
        raise InvalidRequest(
            f"'{loaded.spec.id}' is a {loaded.spec.kind} model: it answers {where}, it does not generate."
        )
    engine = get_engine()
    if req.params.logit_bias:
        bad = [t for t in req.params.logit_bias if not 0 <= t < loaded.vocab_size]
        if bad:
            raise InvalidRequest(f"logit_bias names token ids outside the vocabulary: {bad[:5]}.")
    if isinstance(req, ChatRequest):
        token_lists = [await chat_tokens(req, loaded)]
    else:
        texts = [p for p in req.prompts if isinstance(p, str)]
        for i, prompt in enumerate(req.prompts):
            if isinstance(prompt, str):
                refuse_too_long(prompt, loaded, what=f"prompt[{i}]" if len(req.prompts) > 1 else "The prompt")
        encoded = iter(
            await asyncio.wrap_future(engine.tokenize(loaded, TokenizeKind.TEXTS, texts)) if texts else []
        )
        token_lists = req.token_lists = [next(encoded) if isinstance(p, str) else p for p in req.prompts]
        for i, tokens in enumerate(token_lists):
            if max(tokens) >= loaded.vocab_size:
                raise InvalidRequest(
                    f"prompt[{i}] has token ids outside the vocabulary ({loaded.vocab_size})."
                )
    generations = [
        _request(tokens, req.params, loaded.context_length, getattr(req, "grammar", None))
        for tokens in token_lists
    ]
    if isinstance(req, ChatRequest):
        generations[0].split_reasoning = True
        if req.tools is not None:
            generations[0].tool_format, generations[0].tools = req.tools.format, req.tools.functions
    streams = []
    try:
        for generation in generations:
            streams.append(engine.submit(generation, model=loaded))
    except Exception:
        for stream in streams:  # all or none: the client gets one answer
            stream.cancel()
        raise
    return streams, loaded


async def chat_tokens(req: ChatRequest, loaded) -> list[int]:
    """The prompt of a chat as the model's own template and tokenizer make it."""
    use = req.tools
    payload = {
        "messages": req.messages,
        "tools": use and use.functions,
        "tool_format": use and use.format,
        "template_kwargs": req.template_kwargs,
    }
    refuse_too_long(payload, loaded)
    return await asyncio.wrap_future(get_engine().tokenize(loaded, TokenizeKind.CHAT, payload))


async def opened(stream):
    """(the stream's remaining events, its Started event), or its error raised before a byte
    of the answer is sent (a plain error response)."""
    events = stream.events()
    first = await anext(events)
    if isinstance(first, Failed):
        raise first.error
    return events, first


def log_completion(model_id: str, stats: Stats, *, endpoint: str = "", finish_reason: str = "") -> None:
    signals.request_completed.send(
        sender=Stats, endpoint=endpoint, finish_reason=finish_reason, stats=stats, model=model_id
    )
    speed = stats.tokens_per_second or 0.0
    log.info(
        "Completion request model=%s tokens=%d speed=%.1ftok/s", model_id, stats.completion_tokens, speed
    )


def usage(stats: Stats) -> dict:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
    }


async def prompt_logprobs(req: CompletionRequest, loaded) -> list[list[tuple]] | None:
    """With `echo` and `logprobs`: each prompt's own log-probabilities (text, value, alternatives)."""
    if not req.echo or req.params.logprobs is None:
        return None
    engine = get_engine()
    futures = [engine.score(loaded, tokens, req.params.logprobs) for tokens in req.token_lists]
    return [await asyncio.wrap_future(future) for future in futures]


def usage_sum(all_stats: list[Stats]) -> dict:
    """One usage for several choices: their tokens added up."""
    usages = [usage(stats) for stats in all_stats]
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    cached = sum(u["prompt_tokens_details"]["cached_tokens"] for u in usages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())
